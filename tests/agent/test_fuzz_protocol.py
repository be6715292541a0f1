"""Property tests of the agent's envelope checker (device_agent.protocol): whatever arrives on a
command topic, the node either gets a good envelope or a ProtocolError with one of PROTOCOL.md's
reasons, and nothing but the exact signed content verifies."""
from __future__ import annotations

import base64
import json
import math

import jsonschema_rs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings, strategies as st
# Schemathesis' JSON Schema generator (pinned <5 in the test extra) makes the valid bodies.
from schemathesis.generation.jsonschema.builder import build

from device_agent import schemas
from device_agent.protocol import (ProtocolError, RejectReason, canonical_bytes, command_topic,
                                   parse_event, parse_json_no_floats, sign_envelope,
                                   verify_envelope)
from tests.fuzz_budget import examples

PREFIX = "loa/v1"
NODE = "loa-cho"
GROUPS = ("phuong-le-chan",)
NOW = 1_750_000_000_000
KEY = Ed25519PrivateKey.generate()
KID = "srv-1"
TRUSTED = {KID: KEY.public_key()}

FUZZ = settings(max_examples=examples(100), deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)


def _verify(raw, topic=None):
    return verify_envelope(raw, topic or f"{PREFIX}/nodes/{NODE}/cmd", prefix=PREFIX,
                           node_id=NODE, groups=GROUPS, keys=TRUSTED, now_ms=NOW)


def _checked(raw, topic=None):
    """verify, and if it refuses, only with a ProtocolError carrying a documented reason."""
    try:
        return _verify(raw, topic)
    except ProtocolError as err:
        assert isinstance(err.reason, RejectReason), err
        return None


def _no_floats(value):
    """Bodies may hold unknown fields; a signed one holds no float, so make those integers."""
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else 0
    if isinstance(value, list):
        return [_no_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _no_floats(v) for k, v in value.items()}
    return value


def _body_strategy(type_):
    schema = {k: v for k, v in schemas.BODIES[type_].items() if k != "$id"}
    return build(schema, draft=jsonschema_rs.Draft202012, formats={}).map(_no_floats)


def _signed(type_="set_volume", body=None, to=f"node:{NODE}", **kw):
    return sign_envelope(KEY, KID, type_, to, {"volume": 40} if body is None else body,
                         now_ms=NOW, ttl_ms=60_000, **kw)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_verify_or_are_refused_with_a_documented_reason(raw):
    assert _checked(raw) is None  # random bytes are never a signed envelope


@FUZZ
@given(JSON)
def test_any_json_verifies_or_is_refused_with_a_documented_reason(value):
    text = json.dumps(value)
    assert _checked(text) is None
    assert _checked(text.encode("utf-8")) is None


@FUZZ
@given(st.dictionaries(st.sampled_from(["v", "id", "type", "to", "ts", "exp", "kid", "body",
                                        "sig"]), JSON, max_size=9))
def test_envelope_shaped_junk_is_refused_with_a_documented_reason(env):
    assert _checked(json.dumps(env)) is None


@pytest.mark.parametrize("type_", sorted(schemas.BODIES))
def test_every_command_type_round_trips_sign_then_verify(type_):
    to = f"node:{NODE}"
    topic = command_topic(PREFIX, type_, to)

    @FUZZ
    @given(_body_strategy(type_))
    def run(body):
        env = _signed(type_, body, to)
        assert _verify(json.dumps(env), topic) == env

    run()


MUTATIONS = {
    "body": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    "to": st.sampled_from([f"node:{NODE}x", "group:all", "node:loa-khac", f"group:{GROUPS[0]}",
                           "node:" + NODE.upper(), 7]),
    "type": st.sampled_from(["stop", "play", "amp", "reboot", "desired", "x", "", None]),
    "ts": st.integers(min_value=-1, max_value=NOW + 10**6) | st.text(max_size=3),
    "exp": st.integers(min_value=-1, max_value=NOW + 10**9) | st.none(),
    "kid": st.sampled_from(["srv-2", KID + " ", "", 1]) | st.text(max_size=6),
    "id": st.uuids().map(str) | st.text(max_size=4),
}


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_a_signed_envelope_with_one_field_changed_never_verifies(field):
    @FUZZ
    @given(MUTATIONS[field])
    def run(value):
        env = _signed()
        assume(env[field] != value or type(env[field]) is not type(value))
        forged = {**env, field: value}
        with pytest.raises(ProtocolError) as err:
            _verify(json.dumps(forged))
        if schemas.first_error(schemas.ENVELOPE, forged) is not None:
            assert err.value.reason == "malformed"
        elif forged["kid"] not in TRUSTED:
            assert err.value.reason == "unknown_kid"
        else:
            assert err.value.reason == "bad_signature"

    run()


def _put(value, path, item):
    """Place item at a path of keys/indexes inside value (a dict or a list)."""
    if not path:
        return item
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _put(value.get(head, {}), rest, item)}
    return [_put(value[0] if value else {}, rest, item)]


@FUZZ
@given(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4),
       st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
       st.booleans())
def test_a_float_anywhere_in_signed_content_is_refused(path, number, in_list):
    body = _put({"volume": 40}, path, [number] if in_list else number)
    with pytest.raises(ProtocolError) as err:
        _signed("reboot", body)
    assert err.value.reason == "malformed"
    # Signed anyway (as a buggy or hostile signer would): the node still refuses it.
    env = _signed("reboot", {})
    env["body"] = body
    env["sig"] = base64.b64encode(KEY.sign(canonical_bytes(env))).decode()
    with pytest.raises(ProtocolError) as err:
        _verify(json.dumps(env))
    assert err.value.reason == "malformed"


@FUZZ
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1.0", "1e5", "-0.0", "2E-3"]))
def test_float_spellings_are_refused_by_the_strict_parser(spelling):
    with pytest.raises(ProtocolError) as err:
        parse_json_no_floats(f'{{"a": [{spelling}]}}')
    assert err.value.reason == "malformed"


@FUZZ
@given(st.binary(max_size=200) | JSON.map(json.dumps))
def test_strict_parser_gives_a_float_free_value_or_malformed(raw):
    try:
        value = parse_json_no_floats(raw)
    except ProtocolError as err:
        assert err.reason == "malformed"
        return
    assert not _has_float(value)


def _has_float(value):
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return isinstance(value, float)


@FUZZ
@given(st.binary(max_size=200) | JSON.map(json.dumps)
       | st.fixed_dictionaries({"v": st.just(1), "id": st.text(max_size=3),
                                "type": st.sampled_from(["ack", "played", "alarm",
                                                         "desired_applied", "x"]),
                                "ts": st.integers() | st.floats()}, optional={
                                    "cmd_id": JSON, "status": JSON, "item_id": JSON,
                                    "result": JSON, "version": JSON, "code": JSON}
                                ).map(json.dumps))
def test_any_event_parses_or_is_malformed(raw):
    try:
        event = parse_event(raw)
    except ProtocolError as err:
        assert err.reason == "malformed"
        return
    assert schemas.first_error(schemas.EVENT, event) is None


@pytest.mark.parametrize("parse", [_verify, parse_json_no_floats, parse_event])
def test_nesting_too_deep_for_the_parser_is_malformed_not_a_crash(parse):
    """Found by fuzzing: json.loads raised RecursionError, which no caller caught."""
    with pytest.raises(ProtocolError) as err:
        parse(b"[" * 100_000 + b"]" * 100_000)
    assert err.value.reason == "malformed"
