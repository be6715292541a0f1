"""Telemetry carries real readings from this machine, or null where it cannot read one."""
import os
import shutil
from pathlib import Path

from device_agent import __version__, schemas
from device_agent.telemetry import MachineProbe


def test_telemetry_fields_hold_real_values_or_null(make_node):
    h = make_node(telemetry_s=1)
    found = h.wait_message(lambda t, v: t == h.topic("telemetry"))
    assert found, "no telemetry"
    t = found[1]
    assert schemas.first_error(schemas.TELEMETRY, t) is None
    assert t["agent_version"] == __version__

    machine_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert 0 < t["uptime_s"] <= machine_uptime + 1
    assert abs(t["load1"] - os.getloadavg()[0]) < 5
    assert 0 < t["mem_used_pct"] <= 100
    free_mb = shutil.disk_usage(h.state).free // 2**20
    assert abs(t["disk_free_mb"] - free_mb) < 512

    zones = list(Path("/sys/class/thermal").glob("thermal_zone*/temp"))
    assert (t["cpu_temp_c"] is None) == (not zones)
    if not shutil.which("chronyc"):
        assert t["clock_offset_ms"] is None
    if not shutil.which("mmcli"):
        assert t["net"]["signal_dbm"] is None and t["net"]["operator"] is None
        assert t["net"]["registration"] is None and t["net"]["rsrp_dbm"] is None
    if not shutil.which("vcgencmd"):
        assert set(t["power"].values()) == {None}
    assert t["net"]["type"] in ("ethernet", "wifi", "4g", None)

    assert t["volume"] == 80 and t["amp_on"] is None and t["playing"] is None
    assert t["desired_version"] is None and t["cache_bytes"] == 0


def test_telemetry_reports_what_plays_and_desired_version(make_node):
    h = make_node(telemetry_s=1, realtime=True)
    h.send("desired", {"version": 3})
    h.wait_event("desired_applied", version=3)
    env = h.play("long", priority=5, item_id="now-playing")
    h.wait_ack(env["id"], "started")
    mark = len(h.server.messages)
    found = h.wait_message(lambda t, v: t == h.topic("telemetry") and v.get("playing"),
                           since=mark)
    assert found, "no telemetry while playing"
    t = found[1]
    assert t["playing"]["item_id"] == "now-playing" and t["playing"]["priority"] == 5
    assert t["desired_version"] == 3 and t["cache_bytes"] > 0


def test_machine_probe_reads_a_fake_tree_and_tools(tmp_path):
    proc, sys_ = tmp_path / "proc", tmp_path / "sys"
    (proc / "net").mkdir(parents=True)
    (proc / "uptime").write_text("12345.67 999.0\n")
    (proc / "meminfo").write_text("MemTotal: 4000 kB\nMemFree: 100 kB\nMemAvailable: 1000 kB\n")
    (proc / "net" / "route").write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "wwan0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\n")
    for i, milli in enumerate((48500, 51250)):
        zone = sys_ / "class" / "thermal" / f"thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(f"{milli}\n")
    outputs = {
        "chronyc": "System time     : 0.002500000 seconds slow of NTP time\n"
                   "Leap status     : Normal\n",
        "mmcli --signal-get": '{"modem": {"signal": {"lte": {"rssi": "-67.00"}}}}',
        "mmcli": '{"modem": {"3gpp": {"operator-name": "Vinaphone"}}}',
    }

    def run(argv):
        key = "mmcli --signal-get" if "--signal-get" in argv else argv[0]
        return outputs.get(key)

    sample = MachineProbe(tmp_path, proc=proc, sys=sys_, run=run).sample()
    assert sample["uptime_s"] == 12345.7 and sample["mem_used_pct"] == 75.0
    assert sample["cpu_temp_c"] == 51.2
    assert sample["net"] == {"type": "4g", "signal_dbm": -67.0, "operator": "Vinaphone",
                             "modem_state": None, "access_tech": None, "registration": None,
                             "signal_pct": None, "rsrp_dbm": None, "rsrq_db": None,
                             "sinr_db": None, "iface": "wwan0", "carrier": None,
                             "link_mbps": None, "ssid": None, "wifi_signal_dbm": None,
                             "rx_bytes": None, "tx_bytes": None, "bytes_since": None}
    assert sample["clock_offset_ms"] == -2 and sample["_clock_unsynced"] is False


def test_machine_probe_gives_null_for_what_is_missing(tmp_path):
    sample = MachineProbe(tmp_path, proc=tmp_path / "none", sys=tmp_path / "none",
                          run=lambda argv: None).sample()
    assert sample["uptime_s"] is None and sample["cpu_temp_c"] is None
    assert sample["mem_used_pct"] is None and sample["clock_offset_ms"] is None
    assert sample["net"] == {"type": None, "signal_dbm": None, "operator": None,
                             "modem_state": None, "access_tech": None, "registration": None,
                             "signal_pct": None, "rsrp_dbm": None, "rsrq_db": None,
                             "sinr_db": None, "iface": None, "carrier": None,
                             "link_mbps": None, "ssid": None, "wifi_signal_dbm": None,
                             "rx_bytes": None, "tx_bytes": None, "bytes_since": None}
    assert sample["power"] == {"under_voltage": None, "freq_capped": None, "throttled": None,
                               "soft_temp_limit": None, "under_voltage_since_boot": None,
                               "freq_capped_since_boot": None, "throttled_since_boot": None,
                               "soft_temp_limit_since_boot": None}
