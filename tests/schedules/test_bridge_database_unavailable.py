"""The bridge's worker confirms a node's message to the broker only once it is stored: while
the database cannot take writes (here SQLite's write lock held by another connection past the
busy timeout) nothing is confirmed, nothing is counted against the node, and after the lock is
gone each message is stored once and confirmed once. A bridge stopped meanwhile gives up
without confirming, so the broker delivers the messages again."""
import json
import logging
import sqlite3
import threading
import time

import pytest
from sqlalchemy import func, select

from server.bridge import Bridge, BridgeLimits
from server.models import Event, Node, Telemetry
from tests.transports import SubscribeOnly

TS = 1764000000000


def _setup(make_app):
    s = make_app(database_busy_timeout_s=0.2)
    ward = s.area("Phường Phú Hội", "PH", "ward")
    cluster = s.area("Cụm 1", "PH-1", "cluster", ward["id"])
    node = s.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"], "name": "Loa A"})
    bridge = Bridge(s.app.extensions["db_sessions"], SubscribeOnly(), s.settings.topic_prefix,
                    limits=BridgeLimits())
    return s, bridge, node["id"]


def _messages(bridge, node_id):
    topic = f"{bridge.prefix}/nodes/{node_id}"
    alarm = {"v": 1, "type": "alarm", "ts": TS, "code": "disk_low"}
    return [(f"{topic}/events", json.dumps({**alarm, "id": "a-1"}).encode()),
            (f"{topic}/events", json.dumps({**alarm, "id": "a-2"}).encode()),
            (f"{topic}/telemetry", json.dumps({"v": 1, "ts": TS, "uptime_s": 5}).encode())]


def _lock(s):
    conn = sqlite3.connect(s.settings.database_url[len("sqlite:///"):], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _count(s, model, node_id):
    with s.app.extensions["db_sessions"]() as db:
        return db.scalar(select(func.count()).select_from(model).where(
            model.node_id == node_id))


def _held(make_app, caplog, confirmed: list[int]):
    """A running bridge with the three messages held: the database locked, the ALARM said.
    (the app, the bridge, the node's id, the connection holding the lock)"""
    caplog.set_level(logging.WARNING, logger="server.bridge")
    s, bridge, node_id = _setup(make_app)
    lock = _lock(s)
    bridge.start()
    for i, (topic, payload) in enumerate(_messages(bridge, node_id)):
        bridge.enqueue(topic, payload, lambda i=i: confirmed.append(i))
    _until(lambda: "ALARM database unavailable" in caplog.text)
    return s, bridge, node_id, lock


@pytest.mark.sqlite  # a lock on the SQLite file is the fault
def test_messages_are_held_unconfirmed_while_the_database_is_locked_and_stored_once_after(
        make_app, caplog):
    confirmed: list[int] = []
    s, bridge, node_id, lock = _held(make_app, caplog, confirmed)
    try:
        assert confirmed == []  # the broker keeps them
        lock.rollback()
        _until(lambda: len(confirmed) == 3)
        _until(lambda: "database available again" in caplog.text)
    finally:
        lock.close()
        bridge.stop()
    assert sorted(confirmed) == [0, 1, 2]
    assert _count(s, Event, node_id) == 2 and _count(s, Telemetry, node_id) == 1
    with s.app.extensions["db_sessions"]() as db:
        assert db.get(Node, node_id).rejected_messages == 0  # not the node's fault


@pytest.mark.sqlite
def test_a_bridge_stopped_while_the_database_is_locked_confirms_nothing(make_app, caplog):
    confirmed: list[int] = []
    s, bridge, node_id, lock = _held(make_app, caplog, confirmed)
    try:
        stopping = threading.Thread(target=bridge.stop)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive()
        assert "the broker delivers them again" in caplog.text
    finally:
        lock.rollback()
        lock.close()
    assert confirmed == [] and _count(s, Event, node_id) == 0
