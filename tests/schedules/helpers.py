"""Helpers the bridge tests share (tests/e2e's broker versions of them too): a bridge on a real
SQLite database holding one node, what a message the node may not send may change, and a node's
stored rows and API view after the bridge heard it."""
from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from device_agent.protocol import EventType, make_event
from server.bridge import Bridge
from server.models import Area, Base, Event, Node, init_db, make_engine, make_sessionmaker
from tests import database
from tests.transports import NoTransport

PREFIX = "loa/v1"
NODE = "loa-cho"
KINDS = ("state", "telemetry", "events")
TS = 1764000000000


class NodeBridge:
    """A bridge on a real database holding one registered node: SQLite at ``path``, or a
    schema of its own on PostgreSQL with the tests' switch on (tests/database.py)."""

    def __init__(self, path):
        self.engine = make_engine(database.instance_database(path.parent).get(
            "database_url", f"sqlite:///{path}"))
        init_db(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        with self.sessions() as db:
            area = Area(kind="cluster", name="Cụm 1", code="C1", group="cum-1")
            db.add(area)
            db.flush()
            db.add(Node(id=NODE, cluster_id=area.id, name="Loa chợ", mqtt_password_hash="x"))
            db.commit()
        # handle() only reads the database; the transport is used by start() alone.
        self.bridge = Bridge(self.sessions, NoTransport(), PREFIX)
        self.valid_sent = 0

    def send(self, kind: str, payload: bytes) -> None:
        self.bridge.handle(f"{PREFIX}/nodes/{NODE}/{kind}", payload)

    def counts(self) -> dict:
        with self.sessions() as db:
            return {t.name: db.scalar(select(func.count()).select_from(t))
                    for t in Base.metadata.sorted_tables}

    def events(self) -> int:
        with self.sessions() as db:
            return db.execute(select(func.count()).select_from(Event)).scalar_one()

    def valid_event_is_still_stored(self) -> None:
        before = self.events()
        event_id = str(uuid.uuid4())
        self.send("events", json.dumps(make_event(EventType.ALARM, 1_750_000_000_000, event_id,
                                                  code="fuzz-check")).encode())
        with self.sessions() as db:
            stored = db.scalar(select(Event).where(Event.event_id == event_id))
        assert stored is not None and self.events() == before + 1


def bad_message_changes_nothing_but_what_it_may(nb: NodeBridge, kind: str, payload: bytes):
    """A message a node may not send, on its topic: the bridge takes it without raising,
    stores at most one row of it, and still stores a valid event after it."""
    before = nb.counts()
    nb.send(kind, payload)  # must not raise
    after = nb.counts()
    # At most one row: the event itself (with its play log) or one telemetry sample.
    grown = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    assert set(grown) <= {"events", "playlogs", "telemetry"}, grown
    assert all(0 < n <= 1 for n in grown.values()), grown
    nb.valid_event_is_still_stored()


def node_json(system, node_id):
    return system.ok("GET", f"/api/v1/nodes/{node_id}")


def rows(system, model, node_id):
    with system.app.extensions["db_sessions"]() as db:
        return db.scalars(select(model).where(model.node_id == node_id)).all()


def telemetry(**fields):
    return {"v": 1, "ts": TS, **fields}
