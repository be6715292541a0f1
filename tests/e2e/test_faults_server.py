"""Faults on the server side, with real parts (Mosquitto, SQLite, the dispatcher's worker and
its bridge, and real processes where a process is killed): nothing a node reported is lost,
nothing is stored or played twice, and where a person must act a clear line says so.

Every wait is on a condition with a deadline."""
from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import tomllib

from sqlalchemy import func, select

from schedules.__main__ import Worker
from schedules.slots import slot_id
from server.bridge import Bridge
from server.keys import load_signing_key
from server.models import Event, PlayLog
from server.transport import MqttTransport
from tests.mqtt_helpers import Client
from tests.system import System, played_events

TZ = dt.timezone(dt.timedelta(hours=7))  # Asia/Ho_Chi_Minh, the configured zone


def _node(s: System, name: str = "Loa 1") -> dict:
    ward = s.area("Phường Lê Chân", "HP-LC", "ward")
    cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
    return s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": name})


def _node_client(s: System, node: dict) -> Client:
    """The node's own broker account, as its agent connects (client id = node id)."""
    password = tomllib.loads(node["config"])["mqtt"]["password"]
    client = Client("127.0.0.1", s.broker.port, node["id"], password, client_id=node["id"],
                    clean=False)
    assert client.connect(), "the node could not connect"
    return client


def _alarm(i: int) -> dict:
    return {"v": 1, "id": f"alarm-{i}", "type": "alarm", "ts": int(time.time() * 1000),
            "code": "disk_low", "detail": f"lần {i}"}


def _stored(s: System, node_id: str) -> int:
    with s.app.extensions["db_sessions"]() as db:
        return db.scalar(select(func.count()).select_from(Event).where(
            Event.node_id == node_id, Event.event_id.like("alarm-%"))) or 0


def _worker(s: System) -> Worker:
    kid, key = load_signing_key(s.settings.signing_key_file)
    return Worker(s.settings, s.app.extensions["db_sessions"], key, kid)


def test_events_sent_while_no_dispatcher_acts_are_all_stored_by_the_next_even_when_it_is_slow(
        tmp_path, broker, monkeypatch):
    """The defect behind the flaky failover test: a dispatcher taking over resumes the broker
    session, which hands over what nodes sent meanwhile right after the CONNACK. A message that
    reached the connection before the bridge had subscribed was confirmed and dropped. Here the
    new holder is made slow between starting and subscribing (a busy machine), waiting until
    the broker has handed something over, or 3 s when nothing comes before it subscribes."""
    s = System(tmp_path, broker, start_dispatcher=False)
    try:
        node = _node(s)
        first = _worker(s)
        first.act()  # the session and its subscriptions at the broker
        s.wait(lambda: first.transport is not None and first.transport.connected, 10,
               "the first holder connected")
        first.stand_by()  # its persistent session keeps what nodes send now

        agent = _node_client(s, node)
        for i in range(5):
            agent.publish(f"{broker.prefix}/nodes/{node['id']}/events", _alarm(i))

        handed_over = threading.Event()
        on_message, start = MqttTransport._on_message, Bridge.start

        def seen(self, *args):
            handed_over.set()
            return on_message(self, *args)

        def slow_start(self):
            handed_over.wait(3)
            start(self)

        monkeypatch.setattr(MqttTransport, "_on_message", seen)
        monkeypatch.setattr(Bridge, "start", slow_start)
        second = _worker(s)
        second.act()
        try:
            s.wait(lambda: _stored(s, node["id"]) == 5, 15, "the five alarms stored")
        finally:
            second.stand_by()
        agent.c.disconnect()
        agent.c.loop_stop()
    finally:
        s.stop()


def _db_path(s: System) -> str:
    url = s.settings.database_url
    assert url.startswith("sqlite:///"), "this fault is SQLite's"
    return url[len("sqlite:///"):]


def _health(s: System) -> tuple[int, dict]:
    r = s.call("GET", "/healthz", token=None)
    return r.status_code, r.json()


def _playlogs(s: System, node_id: str, slot: str) -> list[PlayLog]:
    with s.app.extensions["db_sessions"]() as db:
        return list(db.scalars(select(PlayLog).where(PlayLog.node_id == node_id,
                                                     PlayLog.slot_id == slot)))


def test_database_locked_past_the_busy_timeout_holds_reports_and_stores_each_once_after(
        tmp_path, broker):
    """Another connection holds SQLite's write lock for longer than the busy timeout while a
    node plays a slot from its cache: the dispatcher (a real process) cannot write, says so
    (an ALARM line, /healthz 503), keeps what the node reports unconfirmed at the broker, and
    once the lock is gone stores the `played` event exactly once; nothing is refused."""
    s = System(tmp_path, broker, start_dispatcher=False, lease_ttl_s=20, lease_renew_s=1,
               worker_stale_s=6, database_busy_timeout_s=2)
    try:
        proc, log = s.start_dispatcher_process("a")
        s.wait(lambda: "lease dispatcher acquired" in log.read_text(), 60,
               "the dispatcher acting")
        node = _node(s)
        _agent, sink = s.start_agent(node)
        s.wait(lambda: s.ok("GET", f"/api/v1/nodes/{node['id']}")["online"], 30,
               "the agent online")
        b = s.approved_bulletin("Bản tin", "Thông báo.")
        at = (dt.datetime.now(TZ) + dt.timedelta(seconds=12)).replace(microsecond=0)
        bc = s.ok("POST", "/api/v1/broadcasts", json={
            "bulletin_id": b["id"], "targets": {"nodes": [node["id"]]},
            "recurrence": "FREQ=DAILY", "start_at": at.isoformat()})
        slot = slot_id(bc["id"], at)

        def holds() -> bool:
            d = s.ok("GET", f"/api/v1/nodes/{node['id']}/desired")
            held = {e["slot_id"] for e in (d["body"] or {}).get("schedule", [])}
            return slot in held and d["desired_applied"] == d["version"]

        s.wait(holds, at.timestamp() - time.time() - 2, "the node holding the slot")
        plays = lambda: [p for p in played_events(sink)  # noqa: E731
                         if p["item_id"] == f"bc-{bc['id']}"]

        lock = sqlite3.connect(_db_path(s), timeout=10, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the write lock; readers go on (WAL)
        try:
            s.wait(plays, at.timestamp() - time.time() + 15, "the slot played from the cache")
            s.wait(lambda: "ALARM database unavailable" in log.read_text(), 20,
                   "the dispatcher saying it cannot write")
            status, health = s.wait(lambda: (h := _health(s))[0] == 503 and h, 20,
                                    "/healthz saying the dispatcher is stuck")
            assert health["checks"]["database"]["ok"]  # it reads; it is the writes that wait
            assert health["checks"]["broker"]["detail"] == "dispatcher heartbeat is stale"
            assert _playlogs(s, node["id"], slot) == []  # held, not lost: nothing written
        finally:
            lock.rollback()
            lock.close()

        s.wait(lambda: _playlogs(s, node["id"], slot), 30, "the played event stored")
        s.wait(lambda: "database available again" in log.read_text(), 30,
               "the dispatcher saying it writes again")
        s.wait(lambda: _health(s)[0] == 200, 30, "/healthz healthy again")
        (row,) = _playlogs(s, node["id"], slot)
        (play,) = plays()  # played once
        assert row.result == "completed" and row.sha256 == b["sha256"] == play["sha256"]
        assert s.ok("GET", f"/api/v1/nodes/{node['id']}")["rejected"]["messages"] == 0
        with s.app.extensions["db_sessions"]() as db:
            ids = list(db.scalars(select(Event.event_id).where(Event.node_id == node["id"])))
        assert len(ids) == len(set(ids))
        assert proc.poll() is None
    finally:
        s.stop()
