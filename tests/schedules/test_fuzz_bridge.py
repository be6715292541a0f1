"""Property tests of the server's MQTT bridge: whatever a node publishes on its state, telemetry
or events topic, Bridge.handle() never raises, writes nothing partial, and the node's next valid
event is still stored. Driven directly (no broker: handle() is what the transport calls)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from device_agent import schemas
from device_agent.protocol import EventType, make_event
from server.bridge import Refused, decode, fast_validator
from tests.fuzz_budget import examples
from tests.schedules.helpers import KINDS, bad_message_changes_nothing_but_what_it_may

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


@pytest.mark.parametrize("kind", KINDS)
def test_arbitrary_bytes_on_a_node_topic_never_break_the_bridge(node_bridge, kind):
    @FUZZ
    @given(st.binary(max_size=300))
    def run(payload):
        bad_message_changes_nothing_but_what_it_may(node_bridge, kind, payload)
    run()


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_json_on_a_node_topic_never_breaks_the_bridge(node_bridge, kind):
    @FUZZ
    @given(SHAPED[kind] | JSON)
    def run(value):
        bad_message_changes_nothing_but_what_it_may(node_bridge, kind, json.dumps(value).encode())
    run()


def test_the_same_event_twice_is_stored_once(node_bridge):
    event = json.dumps(make_event(EventType.ALARM, 1_750_000_000_000, code="twice")).encode()
    before = node_bridge.events()
    node_bridge.send("events", event)
    node_bridge.send("events", event)
    assert node_bridge.events() == before + 1


def _valid(schema: dict):
    """Messages that fit ``schema``, made from it by schemathesis' generator."""
    import jsonschema_rs
    from schemathesis.generation.jsonschema.builder import build
    return build({k: v for k, v in schema.items() if k != "$id"},
                 draft=jsonschema_rs.Draft202012, formats={})


SCHEMAS = {"events": schemas.EVENT, "telemetry": schemas.TELEMETRY, "state": schemas.STATE}


@pytest.mark.parametrize("kind", KINDS)
def test_the_bridge_refuses_exactly_what_the_agents_own_schema_check_refuses(kind):
    """The bridge's quick check (jsonschema-rs) and the agent's (jsonschema, whose words the
    refusal carries) agree on every message: valid ones made from the schema, schema-shaped
    ones with hostile fields, and any JSON, as the bridge's parser reads them (it refuses
    NaN and the infinities before any schema sees them)."""
    schema = SCHEMAS[kind]

    @FUZZ
    @given(_valid(schema) | SHAPED[kind] | JSON)
    def run(value):
        try:
            value = decode(json.dumps(value).encode())
        except Refused:
            assume(False)
        assert fast_validator(schema).is_valid(value) == \
            (schemas.first_error(schema, value) is None), value
    run()
