"""What a node sends is bounded before it is stored: a size limit per topic checked before
parsing, only the fields the protocol names kept, numbers and strings that every database takes,
and whatever is refused counted on the node (and logged without flooding), never raised out
of the bridge or turned into a page that fails later."""
import json
import logging
import uuid

import pytest
from sqlalchemy import func, select

from server.bridge import BridgeLimits
from server.models import Event, Node, PlayLog, Telemetry
from tests.schedules.helpers import TS, node_json, rows, telemetry


def send(bridge, node_id, kind, payload):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/{kind}", raw)


def event(type_, **fields):
    return {"v": 1, "id": str(uuid.uuid4()), "type": type_, "ts": TS, **fields}


def test_oversized_event_and_state_are_refused_before_parsing(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "events", b"{" + b" " * 20000 + b"}")
    send(bridge, node_id, "state", {"v": 1, "online": True, "agent_version": "a" * 5000})
    got = node_json(system, node_id)
    assert got["rejected"]["messages"] == 2 and got["rejected"]["last_reason"] == "too_large"
    assert got["online"] is False and rows(system, Event, node_id) == []


def test_unknown_fields_are_dropped_not_stored(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "telemetry", telemetry(
        cpu_temp_c=48.5, junk="j" * 3000,
        net={"type": "wifi", "signal_dbm": -60, "extra": [1] * 99},
        playing={"item_id": "bc-1", "priority": 3, "since": TS, "blob": {"a": "b"}}))
    send(bridge, node_id, "state", {"v": 1, "online": True, "agent_version": "1.0",
                                    "secret": "x" * 100})
    send(bridge, node_id, "events", event("alarm", code="disk_low", detail="d", extra={"a": 1}))
    got = node_json(system, node_id)
    assert got["rejected"]["messages"] == 0
    assert got["telemetry"] == {"v": 1, "ts": TS, "cpu_temp_c": 48.5,
                                "net": {"type": "wifi", "signal_dbm": -60},
                                "playing": {"item_id": "bc-1", "priority": 3, "since": TS}}
    [stored] = rows(system, Telemetry, node_id)
    assert stored.payload == got["telemetry"]
    [alarm] = rows(system, Event, node_id)
    assert "extra" not in alarm.payload
    with system.app.extensions["db_sessions"]() as db:
        assert db.get(Node, node_id).last_state == {"v": 1, "online": True, "agent_version": "1.0"}


def test_long_free_text_is_cut_and_long_ids_are_refused(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "events", event("alarm", code="c" * 500, detail="d" * 5000,
                                          reason="r" * 500))
    [alarm] = node_json(system, node_id)["alarms"]
    assert len(alarm["detail"]) == 1000 and alarm["detail"].endswith("…")
    assert len(alarm["reason"]) == 100 and len(alarm["code"]) == 64
    send(bridge, node_id, "events", event("played", item_id="i" * 129, result="completed"))
    got = node_json(system, node_id)
    assert got["rejected"]["messages"] == 1 and got["rejected"]["last_reason"] == "malformed"


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe{not utf-8", "not_utf8"),
    (b"[1, 2, 3]", "malformed"),
    (b'"a string"', "malformed"),
    (b"42", "malformed"),
    (b"null", "malformed"),
    (b"{", "malformed"),
    (b"[" * 15000, "malformed"),
    (b'{"v": 1, "ts": 1, "net": ' + b'{"operator": ' * 1100 + b"1" + b"}" * 1101, "malformed"),
    (b'{"v": 1, "ts": 1, "cpu_temp_c": NaN}', "malformed"),
    (b'{"v": 1, "ts": 1, "cpu_temp_c": Infinity}', "malformed"),
    (b'{"v": 1, "ts": 1, "cpu_temp_c": 1e999}', "out_of_range"),
    (b'{"v": 1, "ts": 9223372036854775808}', "out_of_range"),
    (b'{"v": 1, "ts": 100000000000000000000}', "out_of_range"),
    (b'{"v": 1, "ts": -1}', "malformed"),
    (b'{"v": 1, "ts": 1, "cache_bytes": 18446744073709551616}', "out_of_range"),
    (b'{"v": 1, "ts": 1, "agent_version": "a\\u0000b"}', "malformed"),
    (b'{"v": 1, "ts": 1, "agent_version": "\\ud800"}', "malformed"),
    (b'{"v": 1, "ts": 1' + b"1" * 5000 + b"}", "malformed"),
])
def test_bad_telemetry_is_counted_and_never_stored(bridge_setup, payload, reason):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "telemetry", payload)
    got = node_json(system, node_id)
    assert got["rejected"] == {"messages": 1, "last_reason": reason,
                               "last_at": got["rejected"]["last_at"]}
    assert got["telemetry"] is None and rows(system, Telemetry, node_id) == []


@pytest.mark.parametrize("fields", [
    {"started_at": 2**63}, {"ended_at": 2**64}, {"scheduled_at": -5},
    {"started_at": 253402300800000}, {"ts": 2**62},
])
def test_played_times_out_of_range_leave_no_row_and_pages_work(bridge_setup, fields):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "events", {**event("played", item_id="x", result="completed"),
                                     **fields})
    assert node_json(system, node_id)["rejected"]["messages"] == 1
    assert rows(system, PlayLog, node_id) == [] and rows(system, Event, node_id) == []
    assert system.call("GET", "/api/v1/playlogs").status_code == 200
    assert system.call("GET", "/api/v1/nodes").status_code == 200


def test_desired_applied_counts_only_for_a_version_the_server_sent(bridge_setup):
    system, bridge, node_id = bridge_setup
    for version in (2**31, 2**63, 10**6):
        send(bridge, node_id, "events", event("desired_applied", version=version))
    got = node_json(system, node_id)
    assert got["desired_applied_version"] is None
    assert got["rejected"]["messages"] == 3
    assert got["rejected"]["last_reason"] == "unknown_version"


def test_the_same_event_twice_is_stored_once_and_not_counted(bridge_setup):
    system, bridge, node_id = bridge_setup
    alarm = event("alarm", code="disk_low")
    send(bridge, node_id, "events", alarm)
    send(bridge, node_id, "events", alarm)
    assert len(rows(system, Event, node_id)) == 1
    assert node_json(system, node_id)["rejected"]["messages"] == 0


def test_messages_from_an_unknown_node_are_ignored(bridge_setup):
    system, bridge, _ = bridge_setup
    send(bridge, "no-such-node", "events", event("alarm", code="x"))
    with system.app.extensions["db_sessions"]() as db:
        assert db.scalar(select(func.count()).select_from(Event)) == 0


def test_one_bad_node_cannot_flood_the_log(bridge_setup, caplog):
    system, bridge, node_id = bridge_setup
    with caplog.at_level(logging.WARNING, logger="server.bridge"):
        for _ in range(50):
            send(bridge, node_id, "telemetry", b"not json")
    assert node_json(system, node_id)["rejected"]["messages"] == 50
    assert len([r for r in caplog.records if r.name == "server.bridge"]) == 1


def test_limits_are_configurable_and_checked_at_start(tmp_path):
    from server.config import ConfigError, load_settings
    s = load_settings(tmp_path, {"node_max_event_bytes": 4096}, environ={})
    assert BridgeLimits.from_settings(s).event_bytes == 4096
    with pytest.raises(ConfigError, match="node_max_telemetry_bytes"):
        load_settings(tmp_path, {"node_max_telemetry_bytes": 10}, environ={})
