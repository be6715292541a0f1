"""Property tests of the server's MQTT bridge: whatever a node publishes on its state, telemetry
or events topic, Bridge.handle() never raises, writes nothing partial, and the node's next valid
event is still stored. Driven directly (no broker: handle() is what the transport calls)."""
from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from device_agent.protocol import make_event
from server.bridge import Bridge
from server.models import (Area, Base, Event, Node, init_db, make_engine, make_sessionmaker)
from tests import database
from tests.fuzz_budget import examples

PREFIX = "loa/v1"
NODE = "loa-cho"
KINDS = ("state", "telemetry", "events")
FUZZ = settings(max_examples=examples(80), deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=15)
HOSTILE = (st.integers(min_value=2**63, max_value=2**70) | st.integers(max_value=-1)
           | st.just(float("nan")) | st.just(float("inf")) | st.just(10**300) | JSON)
# Schema-shaped: the required fields there, each either right or hostile, plus unknown fields.
EVENT_SHAPED = st.fixed_dictionaries(
    {"v": st.just(1) | HOSTILE, "id": st.uuids().map(str) | HOSTILE,
     "type": st.sampled_from(["ack", "played", "desired_applied", "media_ready", "alarm"]),
     "ts": st.integers(min_value=0, max_value=2**62) | HOSTILE},
    optional={"cmd_id": st.text(max_size=5) | HOSTILE,
              "status": st.sampled_from(["received", "finished"]) | HOSTILE,
              "item_id": st.text(max_size=5) | HOSTILE, "result": st.just("completed") | HOSTILE,
              "version": st.integers(min_value=0, max_value=2**62) | HOSTILE,
              "code": st.text(min_size=1, max_size=5) | HOSTILE, "started_at": HOSTILE,
              "scheduled_at": HOSTILE, "sha256": st.just("a" * 64) | HOSTILE,
              "unknown": JSON})
TELEMETRY_SHAPED = st.fixed_dictionaries(
    {"v": st.just(1) | HOSTILE, "ts": st.integers(min_value=0, max_value=2**62) | HOSTILE},
    optional={"uptime_s": HOSTILE, "volume": HOSTILE, "cpu_temp_c": HOSTILE, "playing": JSON,
              "net": JSON, "cache_bytes": HOSTILE, "unknown": JSON})
STATE_SHAPED = st.fixed_dictionaries({"v": st.just(1) | HOSTILE,
                                      "online": st.booleans() | HOSTILE},
                                     optional={"ts": HOSTILE, "agent_version": JSON})
SHAPED = {"events": EVENT_SHAPED, "telemetry": TELEMETRY_SHAPED, "state": STATE_SHAPED}


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
        self.bridge = Bridge(self.sessions, None, PREFIX)
        self.valid_sent = 0

    def send(self, kind: str, payload: bytes) -> None:
        self.bridge.handle(f"{PREFIX}/nodes/{NODE}/{kind}", payload)

    def counts(self) -> dict:
        with self.sessions() as db:
            return {t.name: db.scalar(select(func.count()).select_from(t))
                    for t in Base.metadata.sorted_tables}

    def events(self) -> int:
        with self.sessions() as db:
            return db.scalar(select(func.count()).select_from(Event))

    def valid_event_is_still_stored(self) -> None:
        before = self.events()
        event_id = str(uuid.uuid4())
        self.send("events", json.dumps(make_event("alarm", 1_750_000_000_000, event_id,
                                                  code="fuzz-check")).encode())
        with self.sessions() as db:
            stored = db.scalar(select(Event).where(Event.event_id == event_id))
        assert stored is not None and self.events() == before + 1


@pytest.fixture(scope="module")
def node_bridge(tmp_path_factory):
    nb = NodeBridge(tmp_path_factory.mktemp("bridge") / "loa.db")
    yield nb
    nb.engine.dispose()


def _bad_message_changes_nothing_but_what_it_may(nb: NodeBridge, kind: str, payload: bytes):
    before = nb.counts()
    nb.send(kind, payload)  # must not raise
    after = nb.counts()
    # At most one row: the event itself (with its play log) or one telemetry sample.
    grown = {t: after[t] - before[t] for t in after if after[t] != before[t]}
    assert set(grown) <= {"events", "playlogs", "telemetry"}, grown
    assert all(0 < n <= 1 for n in grown.values()), grown
    nb.valid_event_is_still_stored()


@pytest.mark.parametrize("kind", KINDS)
def test_arbitrary_bytes_on_a_node_topic_never_break_the_bridge(node_bridge, kind):
    @FUZZ
    @given(st.binary(max_size=300))
    def run(payload):
        _bad_message_changes_nothing_but_what_it_may(node_bridge, kind, payload)
    run()


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_json_on_a_node_topic_never_breaks_the_bridge(node_bridge, kind):
    @FUZZ
    @given(SHAPED[kind] | JSON)
    def run(value):
        _bad_message_changes_nothing_but_what_it_may(node_bridge, kind, json.dumps(value).encode())
    run()


def test_the_same_event_twice_is_stored_once(node_bridge):
    event = json.dumps(make_event("alarm", 1_750_000_000_000, code="twice")).encode()
    before = node_bridge.events()
    node_bridge.send("events", event)
    node_bridge.send("events", event)
    assert node_bridge.events() == before + 1
