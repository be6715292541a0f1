"""Faults on the server side, with real parts (Mosquitto, SQLite, the dispatcher's worker and
its bridge, and real processes where a process is killed): nothing a node reported is lost,
nothing is stored or played twice, and where a person must act a clear line says so.

Every wait is on a condition with a deadline."""
from __future__ import annotations

import threading
import time
import tomllib

from sqlalchemy import func, select

from schedules.__main__ import Worker
from server.bridge import Bridge
from server.keys import load_signing_key
from server.models import Event
from server.transport import MqttTransport
from tests.mqtt_helpers import Client
from tests.system import System


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
