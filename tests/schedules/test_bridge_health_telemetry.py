"""What a node reads of its own health reaches the technician: telemetry built by the agent's
probe from recorded ``mmcli -J``, ``vcgencmd get_throttled`` and ``chronyc -c tracking`` output
(tests/agent/fixtures) goes through the bridge and comes back, field for field, in the node's
API answer; the alarms the node raised from it are listed on the node; and a node that sends
none of the new fields (an older agent, a third-party node) is read as before."""
import json
import uuid
from pathlib import Path

import pytest

from device_agent import __version__
from device_agent.telemetry import MachineProbe, health_alarms
from tests.agent.machine import machine, recorded

FIXTURES = Path(__file__).resolve().parents[1] / "agent" / "fixtures"
TS = 1764000000000


def send(bridge, node_id, kind, payload):
    bridge.handle(f"{bridge.prefix}/nodes/{node_id}/{kind}", json.dumps(payload).encode())


def recorded_tools(argv):
    """The tools of a Pi on 4G with a weak supply, as recorded (None: not installed)."""
    name: str | None
    if argv[0] == "mmcli":
        name = "mmcli-signal-lte.json" if "--signal-get" in argv else "mmcli-modem-searching.json"
    else:
        name = {"vcgencmd": "vcgencmd-throttled-undervoltage.txt",
                "chronyc": "chronyc-tracking-synced.csv"}.get(argv[0])
    return (FIXTURES / name).read_text(encoding="utf-8") if name else None


def test_recorded_modem_power_and_clock_readings_reach_the_nodes_api(bridge_setup, tmp_path):
    system, bridge, node_id = bridge_setup
    sample = MachineProbe(tmp_path, proc=tmp_path / "none", sys=tmp_path / "none",
                          run=recorded_tools).sample()
    telemetry = {"v": 1, "ts": TS, "agent_version": __version__,
                 **{k: v for k, v in sample.items() if not k.startswith("_")}}
    send(bridge, node_id, "telemetry", telemetry)
    _, raised = health_alarms(sample, frozenset())
    for code, detail in raised:
        send(bridge, node_id, "events", {"v": 1, "id": str(uuid.uuid4()), "type": "alarm",
                                         "ts": TS, "code": code, "detail": detail})

    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 0
    shown = got["telemetry"]
    assert shown["net"] == {"type": None, "modem_state": "searching", "access_tech": None,
                            "registration": "searching", "operator": None, "signal_pct": 0,
                            "signal_dbm": -67.0, "rsrp_dbm": -95.0, "rsrq_db": -11.0,
                            "sinr_db": 10.2, "iface": None, "carrier": None,
                            "link_mbps": None, "ssid": None, "wifi_signal_dbm": None,
                            "rx_bytes": None, "tx_bytes": None, "bytes_since": None}
    assert shown["power"]["under_voltage"] is True and shown["power"]["throttled"] is True
    assert shown["power"]["freq_capped"] is False
    assert shown["clock_offset_ms"] == -1 and shown["agent_version"] == __version__
    assert sorted(a["code"] for a in got["alarms"]) == ["modem_unregistered", "under_voltage"]


MODEM = {"modem": recorded("mmcli-modem-connected.json"),
         "signal": recorded("mmcli-signal-lte.json")}


@pytest.mark.parametrize("node, expected", [
    # on Wi-Fi, its 4G modem connected as a backup: the link's quality and the bearer's bytes
    (dict(route="wlan0", sys={"wlan0/carrier": "1"}, iw=recorded("iw-link-connected.txt"),
          bearer=recorded("mmcli-bearer-connected.json"), **MODEM),
     {"type": "wifi", "iface": "wlan0", "carrier": True, "link_mbps": 72.2,
      "ssid": "UBND Phường 7", "wifi_signal_dbm": -61.0, "rx_bytes": 1843302512,
      "tx_bytes": 96512338, "bytes_since": "connected"}),
    # on Ethernet, the modem's bearer over PPP without statistics: the kernel's counters
    (dict(route="eth0", sys={"eth0/speed": "100", "eth0/carrier": "1",
                             "ppp0/statistics/rx_bytes": "52428800",
                             "ppp0/statistics/tx_bytes": "1048576"},
          bearer=recorded("mmcli-bearer-ppp-no-stats.json"), **MODEM),
     {"type": "ethernet", "iface": "eth0", "carrier": True, "link_mbps": 100, "ssid": None,
      "wifi_signal_dbm": None, "rx_bytes": 52428800, "tx_bytes": 1048576,
      "bytes_since": "boot"}),
], ids=["wifi-and-bearer-stats", "ethernet-and-kernel-counters"])
def test_recorded_link_and_data_used_reach_the_nodes_api(bridge_setup, tmp_path, node,
                                                         expected):
    system, bridge, node_id = bridge_setup
    sample = machine(tmp_path, **node).sample()
    send(bridge, node_id, "telemetry", {"v": 1, "ts": TS, **{
        k: v for k, v in sample.items() if not k.startswith("_")}})

    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 0
    net = got["telemetry"]["net"]
    assert {k: net[k] for k in expected} == expected
    assert net["operator"] == "Viettel" and net["rsrp_dbm"] == -95.0


def test_telemetry_without_the_new_fields_or_with_them_null_is_read_as_before(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "telemetry", {"v": 1, "ts": TS, "cpu_temp_c": 51.5,
                                        "net": {"type": "wifi", "signal_dbm": -60}})
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 0
    assert got["telemetry"] == {"v": 1, "ts": TS, "cpu_temp_c": 51.5,
                                "net": {"type": "wifi", "signal_dbm": -60}}

    send(bridge, node_id, "telemetry", {"v": 1, "ts": TS + 1, "power": None,
                                        "net": {"type": "4g", "rsrp_dbm": None,
                                                "registration": None}})
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 0
    assert got["telemetry"]["net"] == {"type": "4g", "rsrp_dbm": None, "registration": None}


def test_telemetry_with_a_signal_quality_past_100_is_refused_and_counted(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "telemetry", {"v": 1, "ts": TS, "net": {"signal_pct": 150}})
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 1 and got["rejected"]["last_reason"] == "malformed"
    assert got["telemetry"] is None


def test_telemetry_with_a_negative_byte_count_is_refused_and_counted(bridge_setup):
    system, bridge, node_id = bridge_setup
    send(bridge, node_id, "telemetry", {"v": 1, "ts": TS, "net": {"rx_bytes": -1}})
    got = system.ok("GET", f"/api/v1/nodes/{node_id}")
    assert got["rejected"]["messages"] == 1 and got["rejected"]["last_reason"] == "malformed"
    assert got["telemetry"] is None
