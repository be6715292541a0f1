"""A node's health as a technician reads it: the 4G modem (ModemManager's ``mmcli -J``), the
Pi's power and throttling (``vcgencmd get_throttled``) and the clock (chrony), parsed from
recorded output (tests/agent/fixtures/README.md says where each comes from); null when a tool
is missing or prints garbage, never a crash; and the alarms the node raises about itself, once
per episode."""
from __future__ import annotations

from pathlib import Path

import pytest

from device_agent import schemas
from device_agent.agent import PLAYER_FAILING_AFTER
from device_agent.player import Player, PlayOutcome
from device_agent.telemetry import (MODEM_FIELDS, SIGNAL_FIELDS, THROTTLED_BITS, MachineProbe,
                                    health_alarms, parse_get_throttled, parse_mmcli_modem,
                                    parse_mmcli_signal, run_tool)

FIXTURES = Path(__file__).parent / "fixtures"
NULL_MODEM = dict.fromkeys(MODEM_FIELDS + SIGNAL_FIELDS)
NULL_POWER = dict.fromkeys(THROTTLED_BITS)


def recorded(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def replay(**outputs: str | None):
    """A tool runner that answers from recorded output, None (as run_tool does for a missing
    or failing tool) for any command not given."""
    def run(argv: list[str]) -> str | None:
        if argv[0] == "mmcli":
            return outputs.get("signal" if "--signal-get" in argv else "modem")
        return outputs.get(argv[0])
    return run


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
                             "sinr_db": 10.2}
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
            return PlayOutcome("failed", "aplay: main:831: audio open error: No such device")
        return PlayOutcome("completed")


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
