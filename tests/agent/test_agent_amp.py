"""The amplifier through libgpiod v2: the relay powered a lead time before audio starts and off
after an idle time, the fault input raising ``amp_fault`` once per assertion, and a wrong chip
or line stopping the agent at start with an error naming its key.

The relay and fault lines are a fake chip (tests/agent/fake_gpiod.py: the kernel here has no
gpio-sim) behind the real binding's types; the agents are real, on the test's Mosquitto, with
the file sink whose ``started_at`` is compared with the fake chip's timeline. The gpio-sim test
at the end runs the same relay and fault input on the kernel's simulator where it exists."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from gpiod.line import Direction

from device_agent import amp as amp_module
from device_agent.agent import Agent
from device_agent.amp import AmpError, GpiodAmplifier, RecordingAmplifier, make_amplifier
from device_agent.config import AmpConfig, ConfigError, load_config, parse_config
from tests.agent.fake_gpiod import FakeGpiod, pi_names
from tests.agent_harness import Signer, to_toml

RELAY, FAULT = 17, 27
WAIT_S = 10.0


@pytest.fixture
def gpio(tmp_path):
    """A fake Raspberry Pi 4 GPIO chip: (fake gpiod module, the chip, its /dev folder)."""
    fake = FakeGpiod(tmp_path / "dev")
    return fake, fake.add_chip("pinctrl-bcm2711", pi_names()), tmp_path / "dev"


def amp_table(**kw) -> dict:
    table = {"kind": "gpio", "chip": "pinctrl-bcm2711", "relay_line": "GPIO17",
             "active_high": False, "lead_ms": 500, "idle_off_s": 60}
    table.update(kw)
    return table


def gpiod_amp(gpio, table: dict) -> GpiodAmplifier:
    fake, _, dev = gpio
    return GpiodAmplifier(AmpConfig(**table), gpiod=fake, dev=dev)


def relay_on_times(chip, active_high: bool = False) -> list[int]:
    """When the relay line went to its 'on' level (ms, wall clock)."""
    on_level = 1 if active_high else 0
    return [t for t, level in chip.changes(RELAY) if level == on_level]


def relay_off_times(chip, active_high: bool = False) -> list[int]:
    off_level = 0 if active_high else 1
    return [t for t, level in chip.changes(RELAY) if level == off_level]


def wait_for(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # the fake chip is polled within the bound
    raise AssertionError(f"no {what} within {timeout} s")


# --- the relay line ------------------------------------------------------------------------------

def test_relay_is_requested_off_and_active_low_boards_get_the_inverted_level(gpio):
    _, chip, _ = gpio
    amp = gpiod_amp(gpio, amp_table(active_high=False))
    assert chip.level(RELAY) == 1 and amp.state() is False      # active-low: high is off
    assert chip.owners[RELAY].consumer.startswith("loa-agent")
    amp.switch(True)
    assert chip.level(RELAY) == 0 and amp.state() is True
    amp.switch(False)
    assert chip.level(RELAY) == 1 and amp.state() is False
    amp.close()
    assert RELAY not in chip.owners                              # released for other programs


def test_relay_named_by_offset_on_a_chip_named_by_path(gpio):
    _, chip, dev = gpio
    amp = gpiod_amp(gpio, amp_table(chip=str(dev / "gpiochip0"), relay_line=RELAY,
                                    active_high=True))
    amp.switch(True)
    assert chip.level(RELAY) == 1 and amp.relay_offset == RELAY
    amp.close()


def test_a_relay_that_does_not_obey_raises_amp_error(gpio):
    _, chip, _ = gpio
    amp = gpiod_amp(gpio, amp_table())
    # the line was turned into an input behind the agent's back
    chip.owners[RELAY].settings[RELAY].direction = Direction.INPUT
    with pytest.raises(AmpError, match="relay line 17"):
        amp.switch(True)
    amp.close()


# --- wrong pins are refused at start -------------------------------------------------------------

@pytest.mark.parametrize("table,key,words", [
    (amp_table(chip="/dev/gpiochip7"), "amp.chip", "pinctrl-bcm2711"),
    (amp_table(chip="pinctrl-rp1"), "amp.chip", "chips here"),
    (amp_table(relay_line="GPIO99"), "amp.relay_line", "no line named 'GPIO99'"),
    (amp_table(relay_line=60), "amp.relay_line", "offsets 0-57"),
    (amp_table(fault_line="AMP_FAULT"), "amp.fault_line", "no line named"),
])
def test_unknown_chip_or_line_is_a_config_error_naming_its_key(gpio, table, key, words):
    with pytest.raises(ConfigError) as err:
        gpiod_amp(gpio, table)
    assert err.value.key == key and words in str(err.value)


def test_a_line_held_by_another_program_is_a_config_error_naming_it(gpio):
    fake, chip, _ = gpio
    fake.Chip(chip.path).request_lines({RELAY: None}, consumer="gpioset")
    with pytest.raises(ConfigError) as err:
        gpiod_amp(gpio, amp_table())
    assert err.value.key == "amp.relay_line" and "in use by gpioset" in str(err.value)


def test_a_chip_the_agent_may_not_open_says_which_group_it_needs(gpio):
    _, chip, _ = gpio
    chip.denied = True
    with pytest.raises(ConfigError) as err:
        gpiod_amp(gpio, amp_table(chip="gpiochip0"))
    assert err.value.key == "amp.chip" and "gpio group" in str(err.value)


def test_gpio_without_the_gpiod_binding_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)   # import gpiod fails
    with pytest.raises(ConfigError) as err:
        make_amplifier(AmpConfig(**amp_table()))
    assert err.value.key == "amp.kind" and "pip install 'gpiod" in str(err.value)


def test_none_amplifier_needs_no_gpio_library(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)
    assert isinstance(make_amplifier(AmpConfig(kind="none")), RecordingAmplifier)


@pytest.mark.e2e  # the agent as a process of its own (README, Tests)
def test_agent_with_a_missing_chip_stops_at_start_with_the_key_named(tmp_path):
    """The real binding on this machine (it has no GPIO chip): the agent's command line exits 2
    and says which key is wrong."""
    pytest.importorskip("gpiod")
    config = tmp_path / "agent.toml"
    config.write_text(to_toml({
        "node_id": "hp-01-a", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": "127.0.0.1", "port": 1, "password": "p"},
        "server_keys": [{"kid": "k", "public_key": Signer().public_key}],
        "player": {"kind": "file", "sink_dir": str(tmp_path / "sink")},
        "amp": amp_table(chip="/dev/gpiochip-absent")}))
    with pytest.raises(ConfigError) as err:
        Agent(load_config(config))
    assert err.value.key == "amp.chip"
    run = subprocess.run([sys.executable, "-m", "device_agent", "--config", str(config)],
                         capture_output=True, text=True, timeout=60, cwd=Path.cwd())
    assert run.returncode == 2
    assert "amp.chip" in run.stderr and "/dev/gpiochip-absent" in run.stderr


@pytest.mark.parametrize("table,key", [
    ({"kind": "gpio", "fault_bias": "up"}, "amp.fault_bias"),
    ({"kind": "gpio", "lead_ms": -1}, "amp.lead_ms"),
    ({"kind": "gpio", "idle_off_s": 0}, "amp.idle_off_s"),
    ({"kind": "gpio", "relay_line": True}, "amp.relay_line"),
    ({"kind": "gpio", "relay_line": -3}, "amp.relay_line"),
    ({"kind": "gpio", "gpio_pin": 17, "relay_line": 22}, "amp.relay_line"),
    ({"kind": "gpio", "relay_line": 17, "fault_line": 17}, "amp.fault_line"),
    ({"kind": "gpio", "chip": ""}, "amp.chip"),
])
def test_bad_amp_keys_are_refused_naming_the_key(table, key):
    data = {"node_id": "hp-01-a", "mqtt": {"host": "h", "password": "p"},
            "server_keys": [{"kid": "k", "public_key": Signer().public_key}], "amp": table}
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key


def test_older_configs_name_the_relay_gpio_pin():
    data = {"node_id": "hp-01-a", "mqtt": {"host": "h", "password": "p"},
            "server_keys": [{"kid": "k", "public_key": Signer().public_key}],
            "amp": {"kind": "gpio", "gpio_pin": 22}}
    amp = parse_config(data).amp
    assert amp.relay == 22 and amp.lead_ms == 500 and amp.idle_off_s == 60
    assert amp.chip == "gpiochip0" and amp.fault_line is None


# --- around playback (real agents) --------------------------------------------------------------

def node_with_relay(make_node, gpio, **table_kw):
    table = amp_table(**table_kw)
    return make_node(amplifier=gpiod_amp(gpio, table), amp=table)


def test_immediate_play_waits_until_the_relay_has_been_on_for_the_lead_time(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=300)
    assert relay_on_times(chip) == []                       # off at start, nothing to play
    env = h.play("short", item_id="now")
    line = h.wait_sink(lambda ln: ln["item_id"] == "now")
    [on_at] = relay_on_times(chip)
    assert line["started_at"] >= on_at + 300               # the amplifier was warm
    assert h.wait_event("played", cmd_id=env["id"])["started_at"] >= on_at + 300


def test_scheduled_play_starts_on_time_with_the_relay_on_the_lead_time_before(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=400)
    start_at = int(time.time() * 1000) + 1000
    h.play("short", item_id="timed", start_at=start_at)
    line = h.wait_sink(lambda ln: ln["item_id"] == "timed")
    [on_at] = relay_on_times(chip)
    assert start_at - 400 <= on_at <= start_at - 200       # switched on ahead, not long before
    assert start_at <= line["started_at"] < start_at + 400  # and the play was not delayed


def test_desired_slot_starts_at_its_time_with_the_relay_on_the_lead_time_before(make_node, gpio,
                                                                              media_server):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=400)
    start_at = int(time.time() * 1000) + 1000
    h.send("desired", {"version": 1, "schedule": [
        {"slot_id": "s-6h", "start_at": start_at, "priority": 3,
         "item": media_server.item("short", item_id="slot-item")}]})
    played = h.wait_event("played", slot_id="s-6h")
    [on_at] = relay_on_times(chip)
    assert start_at - 400 <= on_at <= start_at - 200
    assert start_at <= played["started_at"] < start_at + 400


def test_a_slot_skipped_for_quiet_hours_does_not_power_the_amplifier(make_node, gpio,
                                                                      media_server):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=200)
    all_day = [{"from": "00:00", "to": "23:59"}, {"from": "23:59", "to": "00:00"}]
    start_at = int(time.time() * 1000) + 500
    h.send("desired", {"version": 1, "quiet_hours": all_day, "schedule": [
        {"slot_id": "s-night", "start_at": start_at, "priority": 3,
         "item": media_server.item("short", item_id="night")}]})
    assert h.wait_event("played", slot_id="s-night")["reason"] == "quiet_hours"
    assert relay_on_times(chip) == []


def test_relay_goes_off_after_the_idle_time_and_not_before(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=100, idle_off_s=0.4)
    h.play("short", item_id="one")
    line = h.wait_sink(lambda ln: ln["item_id"] == "one")
    off_at = wait_for(lambda: [t for t in relay_off_times(chip) if t > relay_on_times(chip)[0]],
                      what="relay off")[0]
    assert off_at >= line["ended_at"] + 400
    assert h.agent.status()["amp_on"] is False


def test_relay_stays_on_between_two_plays_closer_than_the_idle_time(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=100, idle_off_s=5)
    h.play("short", item_id="first")
    first = h.wait_sink(lambda ln: ln["item_id"] == "first")
    h.play("short", item_id="second", start_at=first["ended_at"] + 500)
    h.wait_sink(lambda ln: ln["item_id"] == "second")
    assert len(relay_on_times(chip)) == 1 and relay_off_times(chip)[1:] == []


def test_amp_on_command_switches_on_now_and_the_idle_time_then_switches_off(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, idle_off_s=0.3)
    env = h.send("amp", {"on": True})
    finished = h.wait_ack(env["id"], "finished")
    [on_at] = relay_on_times(chip)
    assert on_at <= finished["ts"]
    off_at = wait_for(lambda: [t for t in relay_off_times(chip) if t > on_at], what="off")[0]
    assert off_at >= on_at + 300


def test_amp_off_command_holds_the_amplifier_off_through_playback(make_node, gpio):
    _, chip, _ = gpio
    h = node_with_relay(make_node, gpio, lead_ms=100)
    h.wait_ack(h.send("amp", {"on": False})["id"], "finished")
    finished = h.wait_ack(h.send("test", {"kind": "tone"})["id"], "finished")
    assert finished["result"] == "fail" and "off" in finished["detail"]
    assert relay_on_times(chip) == []
    h.stop_agent()
    h.amplifier = gpiod_amp(gpio, amp_table(lead_ms=100))  # the lines requested anew
    h.start_agent()                                         # the hold outlives a restart
    h.play("short", item_id="held")
    h.wait_sink(lambda ln: ln["item_id"] == "held")
    assert relay_on_times(chip) == [] and h.agent.status()["amp_on"] is False


def test_a_relay_that_fails_while_powering_raises_amp_fault_once_and_plays_anyway(make_node):
    amp = RecordingAmplifier(fail_with="relay coil open", has_relay=True)
    h = make_node(amplifier=amp, amp=amp_table(lead_ms=300))
    for name in ("a", "b"):
        h.play("short", item_id=name)
        h.wait_event("played", item_id=name)               # played without a working relay
    alarms = h.events("alarm", code="amp_fault")
    assert len(alarms) == 1 and "relay coil open" in alarms[0]["detail"]


# --- the fault input -----------------------------------------------------------------------------

def test_fault_input_raises_amp_fault_once_per_assertion(make_node, gpio, monkeypatch):
    _, chip, _ = gpio
    monkeypatch.setattr(amp_module, "FAULT_POLL_S", 0.05)  # re-read 20 times a second, not 5
    h = node_with_relay(make_node, gpio, fault_line="GPIO27", fault_active_high=False,
                        fault_bias="pull-up")
    wait_for(lambda: h.agent.telemetry()["amp_fault"] is False, what="fault input read")
    chip.drive(FAULT, 0)                                    # the amplifier pulls PROTECT low
    alarm = h.wait_event("alarm", code="amp_fault")
    assert "line 27" in alarm["detail"] and "protection" in alarm["detail"]
    reads = chip.reads[FAULT]
    assert chip.wait_reads(FAULT, reads + 5, WAIT_S)       # still asserted, read again and again
    h.marker()                                              # every alarm queued so far has gone
    assert len(h.events("alarm", code="amp_fault")) == 1
    assert h.agent.telemetry()["amp_fault"] is True
    chip.drive(FAULT, 1)                                    # released
    wait_for(lambda: h.agent.telemetry()["amp_fault"] is False, what="fault released")
    chip.drive(FAULT, 0)                                    # and asserted anew
    wait_for(lambda: len(h.events("alarm", code="amp_fault")) == 2, what="second alarm")


def test_telemetry_without_a_fault_input_says_null(node):
    assert node.agent.telemetry()["amp_fault"] is None


# --- gpio-sim (the kernel's GPIO simulator) ------------------------------------------------------

GPIO_SIM = Path("/sys/kernel/config/gpio-sim")


class GpioSim:
    """A gpio-sim chip made through configfs: named lines, live; ``pull`` drives an input line
    from outside, ``value`` reads what an output line is set to."""

    def __init__(self, names: dict[int, str], num_lines: int = 32):
        self.dir = GPIO_SIM / f"loa-test-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir()
        bank = self.dir / "bank0"
        bank.mkdir()
        (bank / "num_lines").write_text(str(num_lines))
        (bank / "label").write_text("loa-sim")
        for offset, name in names.items():
            (bank / f"line{offset}").mkdir()
            (bank / f"line{offset}" / "name").write_text(name)
        (self.dir / "live").write_text("1")
        self.chip_name = (bank / "chip_name").read_text().strip()
        self.dev_name = (self.dir / "dev_name").read_text().strip()
        self.path = f"/dev/{self.chip_name}"

    def _attr(self, offset: int, what: str) -> Path:
        return Path(f"/sys/devices/platform/{self.dev_name}/{self.chip_name}/sim_gpio{offset}/"
                    f"{what}")

    def value(self, offset: int) -> int:
        return int(self._attr(offset, "value").read_text())

    def pull(self, offset: int, up: bool) -> None:
        self._attr(offset, "pull").write_text("pull-up" if up else "pull-down")

    def close(self) -> None:
        (self.dir / "live").write_text("0")
        for line in (self.dir / "bank0").glob("line*"):
            line.rmdir()
        (self.dir / "bank0").rmdir()
        self.dir.rmdir()


@pytest.mark.skipif(not GPIO_SIM.is_dir(),
                    reason="no gpio-sim: this kernel has no configfs gpio-sim "
                           "(/sys/kernel/config/gpio-sim); modprobe gpio-sim where it exists")
@pytest.mark.skipif(os.geteuid() != 0, reason="making a gpio-sim chip needs root")
def test_relay_and_fault_input_on_the_kernels_gpio_simulator():
    pytest.importorskip("gpiod")
    sim = GpioSim({3: "AMP_RELAY", 5: "AMP_FAULT"})
    try:
        faults: list[bool] = []
        amp = make_amplifier(AmpConfig(kind="gpio", chip="loa-sim", relay_line="AMP_RELAY",
                                       active_high=False, fault_line="AMP_FAULT",
                                       fault_active_high=False, fault_bias="as-is"))
        try:
            assert sim.value(3) == 1                       # off (active-low)
            amp.switch(True)
            assert sim.value(3) == 0 and amp.state() is True
            sim.pull(5, up=True)
            amp.watch_fault(faults.append)
            wait_for(lambda: faults == [False], what="first fault reading")
            sim.pull(5, up=False)
            wait_for(lambda: faults == [False, True], what="fault asserted")
            sim.pull(5, up=True)
            wait_for(lambda: faults == [False, True, False], what="fault released")
            amp.switch(False)
            assert sim.value(3) == 1 and amp.state() is False
        finally:
            amp.close()
    finally:
        sim.close()
