"""Faults on the server side, with real parts (Mosquitto, SQLite, the dispatcher's worker and
its bridge, and real processes where a process is killed): nothing a node reported is lost,
nothing is stored or played twice, and where a person must act a clear line says so.

Every wait is on a condition with a deadline."""
from __future__ import annotations

import datetime as dt
import hashlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from schedules.__main__ import Worker
from server.bridge import Bridge
from server.keys import load_signing_key
from server.models import Broadcast, Bulletin, Event, Media, PlayLog
from server.transport import MqttTransport
from tests.mqtt_helpers import Client
from tests.system import ROOT, System, played_events, series_and_timed_broadcast

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


@pytest.mark.sqlite  # a lock on the SQLite file is the fault
def test_database_locked_past_the_busy_timeout_holds_reports_and_stores_each_once_after(
        tmp_path, broker):
    """Another connection holds SQLite's write lock for longer than the busy timeout while a
    node plays a slot from its cache: the dispatcher (a real process) cannot write, says so
    (an ALARM line, /healthz 503), keeps what the node reports unconfirmed at the broker, and
    once the lock is gone stores the `played` event exactly once; nothing is refused. A timed
    broadcast that fell due during the lock is sent after it, and plays once."""
    s = System(tmp_path, broker, start_dispatcher=False, lease_ttl_s=20, lease_renew_s=1,
               worker_stale_s=6, database_busy_timeout_s=2, schedule_lead_s=0)
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
        # sent at its start (no lead): in the lock
        bc, slot, timed, timed_at = series_and_timed_broadcast(s, node["id"], b["id"], at)
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
            s.wait(lambda: time.time() > timed_at.timestamp() + 1, 30,
                   "the timed broadcast past due")
            assert s.ok("GET", f"/api/v1/broadcasts/{timed['id']}")["nodes"] == []  # unsent
        finally:
            lock.rollback()
            lock.close()

        s.wait(lambda: _playlogs(s, node["id"], slot), 30, "the played event stored")
        s.wait(lambda: "database available again" in log.read_text(), 30,
               "the dispatcher saying it writes again")
        s.wait(lambda: _health(s)[0] == 200, 30, "/healthz healthy again")
        report = s.wait(lambda: (r := s.ok("GET", f"/api/v1/broadcasts/{timed['id']}"))
                        ["nodes"] and r["nodes"][0]["played"] and r, 60,
                        "the timed broadcast sent after the lock and played")
        assert report["nodes"][0]["played"] == "completed"
        assert len([p for p in played_events(sink)
                    if p["item_id"] == f"bc-{timed['id']}"]) == 1
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


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started that still run (Linux /proc)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_web_killed_mid_write_leaves_nothing_half_written_and_every_broadcast_plays_once(
        tmp_path, broker):
    """A real web process (``python -m server``, waitress) is killed with SIGKILL twice: while
    it renders a new bulletin's speech (its espeak/ffmpeg child running), and while eight
    broadcasts are being created at once. After a restart every bulletin that exists has its
    audio, every broadcast that exists was created whole (an answered one always exists) and
    plays exactly once on each of its nodes, and the audit log's chain still verifies."""
    s = System(tmp_path, broker, start_dispatcher=False)
    try:
        _proc, log = s.start_dispatcher_process("a")
        s.wait(lambda: "lease dispatcher acquired" in log.read_text(), 60,
               "the dispatcher acting")
        ward = s.area("Phường Lê Chân", "HP-LC", "ward")
        cluster = s.area("Cụm loa khu phố 3", "HP-LC-3", "cluster", ward["id"])
        sinks = {}
        for i in range(2):
            n = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                    "name": f"Loa {i}"})
            sinks[n["id"]] = s.start_agent(n)[1]
        s.wait(lambda: all(s.ok("GET", f"/api/v1/nodes/{n}")["online"] for n in sinks), 30,
               "the agents online")
        auth = {"Authorization": f"Bearer {s.token}"}

        # 1. killed while it renders a bulletin's speech
        web, url = s.start_web_process("1")
        title = "Bản tin bị ngắt"
        create = threading.Thread(target=lambda: _post_quietly(
            f"{url}/api/v1/bulletins", auth, {"title": title, "category": "other",
                                              "text": "Thông báo mất điện khu phố ba."}))
        create.start()
        s.wait(lambda: _children(web.pid), 30, "the web rendering speech (a child running)")
        _kill9(web)
        create.join(30)
        with s.app.extensions["db_sessions"]() as db:
            for b in db.scalars(select(Bulletin).where(Bulletin.title == title)):
                media = db.get(Media, b.media_sha256) if b.media_sha256 else None
                assert media is not None, "a bulletin without its audio"
                files = list(Path(s.settings.media_dir).rglob(f"{media.sha256}*"))
                assert files and hashlib.sha256(files[0].read_bytes()).hexdigest() \
                    == media.sha256

        # 2. killed while broadcasts are being created
        web, url = s.start_web_process("2")
        b = s.approved_bulletin("Bản tin", "Một.")
        answered: list[int] = []
        first = threading.Event()

        def create_broadcast() -> None:
            body = _post_quietly(f"{url}/api/v1/broadcasts", auth, {
                "bulletin_id": b["id"], "targets": {"areas": [ward["id"]]}})
            if body is not None:
                answered.append(body["id"])
                first.set()

        threads = [threading.Thread(target=create_broadcast) for _ in range(8)]
        for t in threads:
            t.start()
        assert first.wait(30), "no broadcast created"
        _kill9(web)  # the others in flight, answered or not
        for t in threads:
            t.join(30)
        web, url = s.start_web_process("3")

        with s.app.extensions["db_sessions"]() as db:
            made = list(db.scalars(select(Broadcast.id).where(Broadcast.bulletin_id == b["id"])))
        assert set(answered) <= set(made) and made

        def plays(sink: Path, bc: int) -> list[dict]:
            return [p for p in played_events(sink) if p["item_id"] == f"bc-{bc}"]

        for bc in made:
            s.wait(lambda bc=bc: all(plays(sink, bc) for sink in sinks.values()),
                   60, f"broadcast {bc} played on every node")
            report = s.wait(lambda bc=bc: (r := s.ok("GET", f"/api/v1/broadcasts/{bc}"))
                            and len(r["nodes"]) == 2 and all(
                                n["played"] == "completed" for n in r["nodes"]) and r, 30,
                            f"broadcast {bc} reported played by both nodes")
            assert {n["node_id"] for n in report["nodes"]} == set(sinks)
        for sink in sinks.values():  # nothing twice
            for bc in made:
                assert len(plays(sink, bc)) == 1
        with s.app.extensions["db_sessions"]() as db:
            assert db.scalar(select(func.count()).select_from(PlayLog).where(
                PlayLog.broadcast_id.in_(made))) == 2 * len(made)
        verify = subprocess.run([sys.executable, "-m", "server.cli", "--instance",
                                 str(s.instance), "audit-verify"], cwd=ROOT, timeout=60,
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        s.stop()


def _post_quietly(url: str, headers: dict, body: dict) -> dict | None:
    """The answer's JSON, or None when the process died before answering."""
    try:
        r = requests.post(url, headers=headers, json=body, timeout=60)
    except requests.RequestException:
        return None
    assert r.status_code < 300, r.text
    return r.json()
