"""A node's health as a technician reads it: the 4G modem (ModemManager's ``mmcli -J``), the
Pi's power and throttling (``vcgencmd get_throttled``) and the clock (chrony), parsed from
recorded output (tests/agent/fixtures/README.md says where each comes from); null when a tool
is missing or prints garbage, never a crash; and the alarms the node raises about itself, once
per episode."""
from __future__ import annotations

import pytest

from device_agent import schemas
from device_agent.agent import PLAYER_FAILING_AFTER
from device_agent.player import Player, PlayOutcome
from device_agent.protocol import PlayResult
from device_agent.telemetry import (DATA_FIELDS, LINK_FIELDS, MODEM_FIELDS, SIGNAL_FIELDS,
                                    THROTTLED_BITS, MachineProbe, health_alarms,
                                    mmcli_bearers, mmcli_net_port, parse_carrier, parse_counter,
                                    parse_get_throttled, parse_iw_link, parse_link_speed,
                                    parse_mmcli_bearer, parse_mmcli_modem, parse_mmcli_signal,
                                    parse_proc_net_wireless, run_tool)
from tests.agent.machine import machine, recorded, replay

# what the probe reports of a machine whose network it cannot read at all
NULL_MODEM = dict.fromkeys(MODEM_FIELDS + SIGNAL_FIELDS + LINK_FIELDS + DATA_FIELDS)
NULL_POWER = dict.fromkeys(THROTTLED_BITS)


def probe(tmp_path, **outputs) -> MachineProbe:
    return MachineProbe(tmp_path, proc=tmp_path / "none", sys=tmp_path / "none",
                        run=replay(**outputs))


# --- parsers on recorded output -------------------------------------------------------------

def test_connected_modem_gives_state_technology_registration_operator_and_quality():
    assert parse_mmcli_modem(recorded("mmcli-modem-connected.json")) == {
        "modem_state": "connected", "access_tech": "lte", "registration": "home",
        "operator": "Viettel", "signal_pct": 67}


def test_searching_modem_gives_what_it_knows_and_null_for_the_rest():
    assert parse_mmcli_modem(recorded("mmcli-modem-searching.json")) == {
        "modem_state": "searching", "access_tech": None, "registration": "searching",
        "operator": None, "signal_pct": 0}


def test_lte_signal_gives_rssi_rsrp_rsrq_sinr():
    assert parse_mmcli_signal(recorded("mmcli-signal-lte.json")) == {
        "signal_dbm": -67.0, "rsrp_dbm": -95.0, "rsrq_db": -11.0, "sinr_db": 10.2}


def test_signal_before_polling_is_set_up_is_null():
    assert parse_mmcli_signal(recorded("mmcli-signal-not-set-up.json")) == dict.fromkeys(
        SIGNAL_FIELDS)


def test_get_throttled_bits_now_and_since_boot():
    assert parse_get_throttled(recorded("vcgencmd-throttled-undervoltage.txt")) == {
        "under_voltage": True, "freq_capped": False, "throttled": True,
        "soft_temp_limit": False, "under_voltage_since_boot": True,
        "freq_capped_since_boot": False, "throttled_since_boot": True,
        "soft_temp_limit_since_boot": False}
    assert parse_get_throttled(recorded("vcgencmd-throttled-ok.txt")) == dict.fromkeys(
        THROTTLED_BITS, False)


@pytest.mark.parametrize("garbage", [
    "", "error: couldn't find modem\n", '{"modem": {"generic": {"state": "conn', "[1, 2]",
    '{"modem": []}', '{"modem": {"generic": "x", "3gpp": 7, "signal": ["lte"]}}',
    '{"modem": {"generic": {"state": 5, "access-technologies": [1, null], '
    '"signal-quality": {"value": "150"}}, "3gpp": {"registration-state": ["home"]}}}',
    '{"modem": {"signal": {"lte": {"rssi": "NaN", "rsrp": "-inf", "rsrq": "high", '
    '"snr": 10}}}}',
    "\x00\xff binary",
])
def test_mmcli_garbage_gives_null_fields(garbage):
    assert parse_mmcli_modem(garbage) == dict.fromkeys(MODEM_FIELDS)
    assert parse_mmcli_signal(garbage) == dict.fromkeys(SIGNAL_FIELDS)


@pytest.mark.parametrize("garbage", [
    "", "VCHI initialization failed\n", "throttled=\n", "throttled=0xzz\n", "throttled=50005\n",
    "throttled=0x50005 extra\n", "throttled=0x123456789\n", "frequency(48)=1500000000\n"])
def test_get_throttled_garbage_gives_null_fields(garbage):
    assert parse_get_throttled(garbage) == NULL_POWER


# --- the probe -------------------------------------------------------------------------------

def test_probe_puts_modem_and_power_readings_in_the_sample(tmp_path):
    sample = probe(tmp_path, modem=recorded("mmcli-modem-connected.json"),
                   signal=recorded("mmcli-signal-lte.json"),
                   vcgencmd=recorded("vcgencmd-throttled-undervoltage.txt"),
                   chronyc=recorded("chronyc-tracking-synced.csv")).sample()
    assert sample["net"] == {"type": None, "modem_state": "connected", "access_tech": "lte",
                             "registration": "home", "operator": "Viettel", "signal_pct": 67,
                             "signal_dbm": -67.0, "rsrp_dbm": -95.0, "rsrq_db": -11.0,
                             "sinr_db": 10.2, **dict.fromkeys(LINK_FIELDS + DATA_FIELDS)}
    assert sample["power"]["under_voltage"] is True and sample["power"]["throttled"] is True
    assert sample["clock_offset_ms"] == -1
    # the wire names are the protocol's: every field the probe fills is one the schema names
    net_props = schemas.TELEMETRY["properties"]["net"]["oneOf"][1]["properties"]
    power_props = schemas.TELEMETRY["properties"]["power"]["oneOf"][1]["properties"]
    assert set(sample["net"]) == set(net_props) and set(sample["power"]) == set(power_props)
    message = {"v": 1, "ts": 1, **{k: v for k, v in sample.items() if not k.startswith("_")}}
    assert schemas.first_error(schemas.TELEMETRY, message) is None


def test_missing_tools_give_null_modem_and_power(tmp_path):
    missing = str(tmp_path / "no-such-tool")
    sample = MachineProbe(tmp_path, proc=tmp_path / "none", sys=tmp_path / "none",
                          run=lambda argv: run_tool([missing, *argv[1:]])).sample()
    assert sample["net"] == {"type": None, **NULL_MODEM}
    assert sample["power"] == NULL_POWER


def test_modem_without_signal_readings_keeps_its_status(tmp_path):
    sample = probe(tmp_path, modem=recorded("mmcli-modem-connected.json")).sample()
    assert sample["net"]["registration"] == "home" and sample["net"]["operator"] == "Viettel"
    assert all(sample["net"][name] is None for name in SIGNAL_FIELDS)


def test_tools_printing_garbage_give_null_not_a_crash(tmp_path):
    sample = probe(tmp_path, modem="error: couldn't find modem", signal="{",
                   vcgencmd="VCHI initialization failed", chronyc="506 Cannot talk to daemon",
                   timedatectl="garbage").sample()
    assert sample["net"] == {"type": None, **NULL_MODEM}
    assert sample["power"] == NULL_POWER
    assert sample["clock_offset_ms"] is None and sample["_clock_unsynced"] is False
    assert health_alarms(sample, frozenset()) == (frozenset(), [])


# --- data used, Wi-Fi and Ethernet -----------------------------------------------------------

NULL_WIFI = {"ssid": None, "wifi_signal_dbm": None, "link_mbps": None}
NULL_BEARER = {"connected": None, "interface": None, "rx_bytes": None, "tx_bytes": None}


def test_connected_bearer_gives_the_bytes_of_its_ongoing_connection():
    assert parse_mmcli_bearer(recorded("mmcli-bearer-connected.json")) == {
        "connected": True, "interface": "wwan0", "rx_bytes": 1843302512, "tx_bytes": 96512338}
    status = recorded("mmcli-modem-connected.json")
    assert mmcli_bearers(status) == ["/org/freedesktop/ModemManager1/Bearer/1"]
    assert mmcli_net_port(status) == "wwan0"


def test_bearer_without_statistics_gives_its_interface_and_no_bytes():
    assert parse_mmcli_bearer(recorded("mmcli-bearer-ppp-no-stats.json")) == {
        "connected": True, "interface": "ppp0", "rx_bytes": None, "tx_bytes": None}


def test_wifi_link_gives_ssid_signal_and_transmit_bitrate():
    assert parse_iw_link(recorded("iw-link-connected.txt")) == {
        "ssid": "UBND Phường 7", "wifi_signal_dbm": -61.0, "link_mbps": 72.2}
    assert parse_iw_link(recorded("iw-link-not-connected.txt")) == NULL_WIFI
    assert parse_proc_net_wireless(recorded("proc-net-wireless.txt"), "wlan0") == -61.0
    assert parse_proc_net_wireless(recorded("proc-net-wireless.txt"), "wlan1") is None


def test_an_ssid_that_is_not_utf8_stays_as_iw_escaped_it():
    text = "Connected to 04:f0:21:1c:3e:8a (on wlan0)\n\tSSID: cafe\\xe9\\x00\n"
    assert parse_iw_link(text)["ssid"] == "cafe\\xe9\\x00"


@pytest.mark.parametrize("garbage", [
    "", "command failed: No such device (-19)\n", "Connected to nowhere\n",
    "Connected to 04:f0:21:1c:3e:8a (on wlan0)\n\tSSID: \x00bad\n\tsignal: 40 dBm\n"
    "\ttx bitrate: (unknown)\n",
    "Connected to 04:f0:21:1c:3e:8a (on wlan0)\n\tsignal: -999 dBm\n"
    "\ttx bitrate: 99999999.9 MBit/s\n",
    "\x00\xff binary"])
def test_iw_garbage_gives_null_fields(garbage):
    assert parse_iw_link(garbage) == NULL_WIFI
    assert parse_proc_net_wireless(garbage, "wlan0") is None


@pytest.mark.parametrize("garbage", [
    "", "{", "[]", '{"bearer": []}', '{"bearer": {"status": "yes", "stats": 5}}',
    '{"bearer": {"status": {"connected": true, "interface": "wwan0; rm -rf /"}, '
    '"stats": {"bytes-rx": "-5", "bytes-tx": "9007199254740993"}}}',
    '{"bearer": {"stats": {"bytes-rx": "1e9", "bytes-tx": "12.5"}}}'])
def test_mmcli_bearer_garbage_gives_null_fields(garbage):
    assert parse_mmcli_bearer(garbage) == NULL_BEARER
    assert mmcli_bearers(garbage) == [] and mmcli_net_port(garbage) is None


@pytest.mark.parametrize("garbage", ["", "-1", "abc", "1.5", "0x10", "\x00", "²", "\u0661"])
def test_sysfs_garbage_gives_null(garbage):
    assert parse_link_speed(garbage) is None and parse_carrier(garbage) is None
    assert parse_counter(garbage) is None


def test_sysfs_values_are_read():
    assert parse_link_speed("1000\n") == 1000 and parse_carrier("1\n") is True
    assert parse_carrier("0\n") is False and parse_counter("123456789\n") == 123456789
    assert parse_counter(str(2 ** 53)) is None, "the server refuses it: unknown, not wrapped"
    assert parse_link_speed("4294967295") is None, "SPEED_UNKNOWN read as unsigned"


MODEM_CONNECTED = {"modem": recorded("mmcli-modem-connected.json"),
                   "signal": recorded("mmcli-signal-lte.json")}


def test_a_4g_node_reports_the_bytes_of_its_bearers_connection(tmp_path):
    net = machine(tmp_path, route="wwan0", sys={"wwan0/carrier": "1"},
                  bearer=recorded("mmcli-bearer-connected.json"), **MODEM_CONNECTED).sample()["net"]
    assert net["type"] == "4g" and net["iface"] == "wwan0" and net["carrier"] is True
    assert (net["rx_bytes"], net["tx_bytes"], net["bytes_since"]) == (1843302512, 96512338,
                                                                      "connected")
    assert net["ssid"] is None and net["link_mbps"] is None and net["operator"] == "Viettel"


def test_a_bearer_without_statistics_falls_back_to_the_kernels_counters(tmp_path):
    # the modem's net port (wwan0) also counts, but the connected bearer runs over ppp0
    net = machine(tmp_path, route="ppp0",
                  sys={"ppp0/statistics/rx_bytes": "52428800",
                       "ppp0/statistics/tx_bytes": "1048576",
                       "wwan0/statistics/rx_bytes": "1", "wwan0/statistics/tx_bytes": "1"},
                  bearer=recorded("mmcli-bearer-ppp-no-stats.json"),
                  **MODEM_CONNECTED).sample()["net"]
    assert (net["rx_bytes"], net["tx_bytes"], net["bytes_since"]) == (52428800, 1048576, "boot")


def test_without_modemmanager_a_4g_default_route_gives_its_kernel_counters(tmp_path):
    net = machine(tmp_path, route="usb0", sys={"usb0/statistics/rx_bytes": "700",
                                               "usb0/statistics/tx_bytes": "300"}).sample()["net"]
    assert net["type"] == "4g" and net["modem_state"] is None
    assert (net["rx_bytes"], net["tx_bytes"], net["bytes_since"]) == (700, 300, "boot")


def test_a_wifi_node_reports_ssid_signal_and_bitrate(tmp_path):
    net = machine(tmp_path, route="wlan0", sys={"wlan0/carrier": "1"},
                  iw=recorded("iw-link-connected.txt")).sample()["net"]
    assert {k: net[k] for k in LINK_FIELDS} == {
        "iface": "wlan0", "carrier": True, "link_mbps": 72.2, "ssid": "UBND Phường 7",
        "wifi_signal_dbm": -61.0}
    assert net["type"] == "wifi" and net["rx_bytes"] is None and net["bytes_since"] is None


def test_without_iw_the_wifi_signal_comes_from_proc_net_wireless(tmp_path):
    net = machine(tmp_path, route="wlan0",
                  wireless=recorded("proc-net-wireless.txt")).sample()["net"]
    assert net["wifi_signal_dbm"] == -61.0
    assert net["ssid"] is None and net["link_mbps"] is None and net["carrier"] is None


def test_an_ethernet_node_reports_link_speed_and_carrier(tmp_path):
    net = machine(tmp_path, route="eth0", sys={"eth0/speed": "100", "eth0/carrier": "1"},
                  iw=recorded("iw-link-connected.txt")).sample()["net"]
    assert {k: net[k] for k in LINK_FIELDS} == {
        "iface": "eth0", "carrier": True, "link_mbps": 100, "ssid": None,
        "wifi_signal_dbm": None}


def test_network_files_and_tools_printing_garbage_give_null_not_a_crash(tmp_path):
    sample = machine(tmp_path, route="wlan0", wireless="garbage\n",
                     sys={"wlan0/carrier": "x", "wlan0/statistics/rx_bytes": "-1"},
                     iw="command failed: Operation not supported (-95)",
                     modem=recorded("mmcli-modem-connected.json"), bearer="{").sample()
    assert sample["net"] == {**NULL_MODEM, "type": "wifi", "iface": "wlan0",
                             **parse_mmcli_modem(recorded("mmcli-modem-connected.json"))}
    message = {"v": 1, "ts": 1, **{k: v for k, v in sample.items() if not k.startswith("_")}}
    assert schemas.first_error(schemas.TELEMETRY, message) is None


# --- alarms the node raises itself ------------------------------------------------------------

def test_under_voltage_and_unregistered_modem_are_raised_once_per_episode(tmp_path):
    bad = probe(tmp_path, modem=recorded("mmcli-modem-searching.json"),
                vcgencmd=recorded("vcgencmd-throttled-undervoltage.txt")).sample()
    good = probe(tmp_path, modem=recorded("mmcli-modem-connected.json"),
                 vcgencmd=recorded("vcgencmd-throttled-ok.txt")).sample()

    active, raised = health_alarms(bad, frozenset())
    assert sorted(code for code, _ in raised) == ["modem_unregistered", "under_voltage"]
    assert "searching" in dict(raised)["modem_unregistered"]
    active, raised = health_alarms(bad, active)
    assert raised == [], "an alarm that still holds is not raised again"
    active, raised = health_alarms(good, active)
    assert raised == [] and active == frozenset()
    active, raised = health_alarms(bad, active)
    assert sorted(code for code, _ in raised) == ["modem_unregistered", "under_voltage"]


def test_under_voltage_since_boot_only_raises_nothing(tmp_path):
    # 0x50000: it happened earlier since boot, and the supply is fine now
    sample = probe(tmp_path, vcgencmd="throttled=0x50000\n").sample()
    assert sample["power"]["under_voltage"] is False
    assert sample["power"]["under_voltage_since_boot"] is True
    assert health_alarms(sample, frozenset())[1] == []


def test_roaming_is_registered_and_unknown_registration_raises_nothing():
    for registration in ("home", "roaming", "roaming-csfb-not-preferred", None):
        assert health_alarms({"net": {"registration": registration}}, frozenset())[1] == []
    for registration in ("denied", "idle", "searching", "home-sms-only"):
        active, raised = health_alarms({"net": {"registration": registration}}, frozenset())
        assert [code for code, _ in raised] == ["modem_unregistered"]


class SwitchablePlayer(Player):
    """A player whose sound card can be pulled out (``broken``) and put back."""

    name = "alsa-test"

    def __init__(self) -> None:
        self.broken = True

    def play(self, request, cancel):
        if self.broken:
            return PlayOutcome(PlayResult.FAILED,
                               "aplay: main:831: audio open error: No such device")
        return PlayOutcome(PlayResult.COMPLETED)


def test_player_failing_after_failed_plays_in_a_row_once_until_a_play_completes(make_node):
    player = SwitchablePlayer()
    h = make_node(player=player)

    def tone_fails() -> None:
        env = h.send("test", {"kind": "tone"})
        ack = h.wait_ack(env["id"], "finished")
        assert ack["result"] == "fail" and ack["reason"] == "player_error"

    for _ in range(PLAYER_FAILING_AFTER - 1):
        tone_fails()
    assert h.events("alarm", code="player_failing") == []
    tone_fails()
    alarm = h.wait_event("alarm", code="player_failing")
    assert "No such device" in alarm["detail"] and "alsa-test" in alarm["detail"]
    tone_fails()
    h.marker()
    assert len(h.events("alarm", code="player_failing")) == 1, "raised once while it holds"

    player.broken = False
    env = h.send("test", {"kind": "tone"})
    assert h.wait_ack(env["id"], "finished")["result"] == "ok"
    player.broken = True
    for _ in range(PLAYER_FAILING_AFTER):
        tone_fails()
    h.marker()
    assert len(h.events("alarm", code="player_failing")) == 2, "a new episode raises it again"
