"""Synchronized start needs every node's clock on NTP time: the server raises ``clock_off`` for
a node whose reported offset is past the limit (100 ms by default) or that says its clock is not
synchronised, once when the condition starts, listed with the node's alarms."""
import json
import uuid

import pytest

from server.bridge import Bridge, BridgeLimits
from tests.transports import NoTransport

TS = 1764000000000


@pytest.fixture
def setup(app_only):
    ward = app_only.area("Phường Phú Hội", "PH", "ward")
    cluster = app_only.area("Cụm 1", "PH-1", "cluster", ward["id"])
    node = app_only.ok("POST", "/api/v1/nodes", json={"cluster_id": cluster["id"],
                                                      "name": "Loa A"})
    return app_only, cluster["id"], node["id"]


def bridge_for(system, **limits):
    return Bridge(system.app.extensions["db_sessions"], NoTransport(),
                  system.settings.topic_prefix, limits=BridgeLimits(**limits))


def send(bridge, node_id, kind, payload):
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/{kind}", json.dumps(payload).encode())


def telemetry(ts, offset):
    return {"v": 1, "ts": ts, "clock_offset_ms": offset}


def clock_alarms(system, node_id):
    return [a for a in system.ok("GET", f"/api/v1/nodes/{node_id}")["alarms"]
            if a["code"] == "clock_off"]


def test_offset_past_the_limit_raises_clock_off_once(setup):
    system, cluster_id, node_id = setup
    bridge = bridge_for(system)
    for i, offset in enumerate((3, None, -100, 100)):
        send(bridge, node_id, "telemetry", telemetry(TS + i, offset))
    assert clock_alarms(system, node_id) == []

    for i, offset in enumerate((-140, -150, 180)):  # one episode: raised once
        send(bridge, node_id, "telemetry", telemetry(TS + 10 + i, offset))
    [alarm] = clock_alarms(system, node_id)
    assert "-140 ms" in alarm["detail"] and alarm["ts"] == TS + 10

    send(bridge, node_id, "telemetry", telemetry(TS + 20, 5))  # back in step
    send(bridge, node_id, "telemetry", telemetry(TS + 21, 400))  # a new episode
    assert [a["ts"] for a in clock_alarms(system, node_id)] == [TS + 21, TS + 10]

    listed = system.ok("GET", f"/api/v1/nodes?area={cluster_id}")["nodes"]
    assert [a["code"] for a in listed[0]["alarms"]].count("clock_off") == 2
    assert system.ok("GET", f"/api/v1/nodes/{node_id}")["rejected"]["messages"] == 0


def test_limit_is_configurable(setup, tmp_path):
    system, _cluster_id, node_id = setup
    bridge = bridge_for(system, clock_offset_ms=500)
    send(bridge, node_id, "telemetry", telemetry(TS, 400))
    assert clock_alarms(system, node_id) == []
    send(bridge, node_id, "telemetry", telemetry(TS + 1, -501))
    assert len(clock_alarms(system, node_id)) == 1

    from server.config import ConfigError, load_settings
    s = load_settings(tmp_path, {"node_max_clock_offset_ms": 250}, environ={})
    assert BridgeLimits.from_settings(s).clock_offset_ms == 250
    assert load_settings(tmp_path, {}, environ={}).node_max_clock_offset_ms == 100
    with pytest.raises(ConfigError, match="node_max_clock_offset_ms"):
        load_settings(tmp_path, {"node_max_clock_offset_ms": 0}, environ={})


def test_a_node_saying_it_is_unsynced_gets_clock_off(setup):
    system, _cluster_id, node_id = setup
    bridge = bridge_for(system)
    alarm = {"v": 1, "id": str(uuid.uuid4()), "type": "alarm", "ts": TS, "code": "clock_unsynced",
             "detail": "the clock is not synchronised (chrony or timedatectl)"}
    send(bridge, node_id, "events", alarm)
    send(bridge, node_id, "events", alarm)  # QoS 1 delivers it again: still one alarm
    [off] = clock_alarms(system, node_id)
    assert "not synchronised" in off["detail"]
    codes = [a["code"] for a in system.ok("GET", f"/api/v1/nodes/{node_id}")["alarms"]]
    assert sorted(codes) == ["clock_off", "clock_unsynced"]
