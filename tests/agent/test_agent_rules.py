"""The agent's functional core, tested directly: priority and preemption, the waiting line,
late and expired rules, quiet hours, stop targets, key changes, health parsers."""
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from device_agent.rules import (ItemKind, KeyChangeRefused, KeyState, QueueItem,
                                apply_key_change, command_ready_at, effective_volume,
                                in_quiet_hours, plan, stop_targets, trusted_keys)
from device_agent.telemetry import (default_route_interface, health_alarms, interface_type,
                                    parse_chronyc_tracking, parse_meminfo, parse_mmcli_modem,
                                    parse_mmcli_signal)

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = 1_800_000_000_000


def cmd(name, priority=3, seq=1, ready_at=NOW, exp=NOW + 60_000, **kw):
    return QueueItem(key=f"cmd:{name}", kind=ItemKind.PLAY, item_id=name, priority=priority,
                     seq=seq, ready_at=ready_at, scheduled_at=ready_at, exp=exp, cmd_id=name,
                     **kw)


def slot(name, start_at, priority=3, seq=1):
    return QueueItem(key=f"slot:{name}", kind=ItemKind.SLOT, item_id=name, priority=priority,
                     seq=seq, ready_at=start_at, scheduled_at=start_at, slot_id=name)


def local_ms(hhmm: str) -> int:
    h, m = map(int, hhmm.split(":"))
    return int(datetime(2026, 3, 10, h, m, tzinfo=HCM).timestamp() * 1000)


# --- the waiting line ------------------------------------------------------------------------

def test_idle_node_starts_best_item_by_priority_then_arrival():
    a, b, c = cmd("a", 3, seq=1), cmd("b", 5, seq=2), cmd("c", 5, seq=3)
    step = plan(NOW, None, [a, b, c], quiet=False)
    assert step.start == b and not step.preempt and not step.skip


def test_higher_priority_preempts_what_plays():
    step = plan(NOW, cmd("low", 3), [cmd("high", 5, seq=2)], quiet=False)
    assert step.start is not None and step.start.item_id == "high" and step.preempt


@pytest.mark.parametrize("playing,arriving", [(3, 3), (5, 3), (9, 9)])
def test_equal_or_lower_priority_waits_and_emergency_never_preempts_emergency(playing, arriving):
    step = plan(NOW, cmd("playing", playing), [cmd("new", arriving, seq=2)], quiet=False)
    assert step.start is None and not step.preempt and not step.skip


def test_item_whose_media_is_not_ready_does_not_start():
    step = plan(NOW, None, [cmd("a", 5), cmd("b", 3, seq=2)], quiet=False,
                ready=lambda i: i.item_id != "a")
    assert step.start is not None and step.start.item_id == "b"


def test_future_start_waits_and_sets_wake_time():
    step = plan(NOW, None, [cmd("later", ready_at=NOW + 5000)], quiet=False)
    assert step.start is None and step.wake_at == NOW + 5000


def test_immediate_command_whose_start_passed_plays_at_once_within_exp():
    assert command_ready_at(NOW - 30_000, NOW) == NOW
    item = cmd("late-cmd", ready_at=command_ready_at(NOW - 30_000, NOW), exp=NOW + 1)
    assert plan(NOW, None, [item], quiet=False).start == item


def test_waiting_command_past_exp_is_skipped_expired_even_behind_a_playing_item():
    waiting = cmd("w", 3, exp=NOW - 1)
    step = plan(NOW, cmd("playing", 5), [waiting], quiet=False)
    assert step.skip == ((waiting, "expired"),)


def test_slot_more_than_60s_late_is_skipped_when_it_would_start():
    late, fine = slot("late", NOW - 61_000, seq=1), slot("fine", NOW - 59_000, seq=2)
    # while something higher plays, lateness is not judged yet
    assert plan(NOW, cmd("p", 9), [late], quiet=False).skip == ()
    step = plan(NOW, None, [late, fine], quiet=False)
    assert step.skip == ((late, "late"),) and step.start == fine


def test_quiet_hours_skip_non_emergency_at_start_and_emergency_plays():
    normal, emergency = cmd("n", 3, seq=1), cmd("e", 9, seq=2)
    step = plan(NOW, None, [normal], quiet=True)
    assert step.skip == ((normal, "quiet_hours"),) and step.start is None
    assert plan(NOW, None, [emergency], quiet=True).start == emergency


def test_emergency_plays_at_full_volume_others_at_item_or_node_volume():
    assert effective_volume(9, 20, 50) == 100
    assert effective_volume(3, 20, 50) == 20
    assert effective_volume(3, None, 50) == 50


# --- quiet hours ------------------------------------------------------------------------------

@pytest.mark.parametrize("now,intervals,expected", [
    ("22:00", [{"from": "22:00", "to": "05:00"}], True),    # from is inside
    ("04:59", [{"from": "22:00", "to": "05:00"}], True),    # crosses midnight
    ("05:00", [{"from": "22:00", "to": "05:00"}], False),   # to is outside
    ("12:00", [{"from": "22:00", "to": "05:00"}], False),
    ("12:30", [{"from": "12:00", "to": "13:00"}], True),
    ("13:00", [{"from": "12:00", "to": "13:00"}], False),
    ("12:00", [{"from": "12:00", "to": "12:00"}], False),   # from == to: none
    ("03:00", [], False),
])
def test_quiet_hours_are_half_open_in_local_time(now, intervals, expected):
    assert in_quiet_hours(local_ms(now), intervals, HCM) is expected


def test_quiet_hours_follow_the_time_zone():
    # 23:00 in Ho Chi Minh City is 16:00 UTC
    assert in_quiet_hours(local_ms("23:00"), [{"from": "22:00", "to": "05:00"}], HCM)
    assert not in_quiet_hours(local_ms("23:00"), [{"from": "22:00", "to": "05:00"}],
                              ZoneInfo("UTC"))


# --- stop ----------------------------------------------------------------------------------------

def test_stop_by_item_id_hits_that_item_whatever_its_priority_or_kind():
    playing = cmd("x", 9)
    waiting = [cmd("y", 3, seq=2), slot("x", NOW + 1000, seq=3)]
    assert [i.key for i in stop_targets(playing, waiting, "x", None)] == ["cmd:x", "slot:x"]


def test_stop_by_max_priority_spares_higher_items_and_waiting_slots():
    playing = cmd("p", 3)
    future, high = cmd("f", 2, seq=2, ready_at=NOW + 60_000), cmd("h", 5, seq=3)
    s = slot("s", NOW + 1000, priority=1, seq=4)
    assert stop_targets(playing, [future, high, s], None, 3) == [playing, future]
    assert stop_targets(cmd("p9", 9), [], None, 3) == []


def test_stop_by_max_priority_stops_a_playing_slot():
    playing = slot("s", NOW, priority=3)
    assert stop_targets(playing, [], None, 3) == [playing]


# --- keys ---------------------------------------------------------------------------------------

PROV = {"k1": "A" * 43 + "="}


def test_keys_revocations_come_first_then_additions():
    state = apply_key_change(PROV, KeyState(), [{"kid": "k2", "public_key": "B" * 43 + "="}], [])
    assert set(trusted_keys(PROV, state)) == {"k1", "k2"}
    state = apply_key_change(PROV, state, [], ["k1"])
    assert set(trusted_keys(PROV, state)) == {"k2"}
    # a provisioning key revoked stays revoked; re-adding it trusts it again
    state = apply_key_change(PROV, state, [{"kid": "k1", "public_key": PROV["k1"]}], [])
    assert set(trusted_keys(PROV, state)) == {"k1", "k2"}


def test_revoking_the_last_key_is_refused_even_if_the_same_command_adds_one():
    with pytest.raises(KeyChangeRefused) as err:
        apply_key_change(PROV, KeyState(), [{"kid": "k2", "public_key": "B" * 43 + "="}], ["k1"])
    assert err.value.reason == "last_key"


def test_key_state_round_trips_through_json():
    state = KeyState({"k2": "x"}, frozenset({"k1"}))
    assert KeyState.from_json(state.to_json()) == state


# --- health parsers -------------------------------------------------------------------------------

def test_interface_names_map_to_network_types():
    assert [interface_type(n) for n in ("wwan0", "ppp0", "usb0", "wlan0", "eth0", "enp3s0",
                                        "docker0")] == ["4g", "4g", "4g", "wifi", "ethernet",
                                                        "ethernet", None]


def test_default_route_interface_prefers_lowest_metric():
    table = ("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
             "eth0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\n"
             "wwan0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\n"
             "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n")
    assert default_route_interface(table) == "wwan0"
    assert default_route_interface("Iface\tDestination\n") is None


def test_chronyc_offset_sign_and_sync_state():
    fast = "Reference ID    : A\nSystem time     : 0.012345678 seconds fast of NTP time\n"
    slow = "System time     : 1.500000000 seconds slow of NTP time\n"
    assert parse_chronyc_tracking(fast) == 12
    assert parse_chronyc_tracking(slow) == -1500
    assert parse_chronyc_tracking("garbage") is None


def test_mmcli_signal_and_operator():
    status = parse_mmcli_modem('{"modem": {"3gpp": {"operator-name": "Viettel"}}}')
    signal = parse_mmcli_signal('{"modem": {"signal": {"lte": {"rssi": "-71.00", '
                                '"rsrp": "--"}}}}')
    assert status["operator"] == "Viettel"
    assert signal["signal_dbm"] == -71.0 and signal["rsrp_dbm"] is None
    assert parse_mmcli_signal("{}")["signal_dbm"] is None


def test_meminfo_used_percent():
    assert parse_meminfo("MemTotal: 1000 kB\nMemAvailable: 250 kB\n") == 75.0
    assert parse_meminfo("MemTotal: 1000 kB\n") is None


def test_health_alarms_are_raised_once_per_episode():
    active, raised = health_alarms({"disk_free_mb": 10, "cpu_temp_c": 50.0}, frozenset())
    assert [code for code, _ in raised] == ["disk_low"]
    active, raised = health_alarms({"disk_free_mb": 10, "cpu_temp_c": 85.0}, active)
    assert [code for code, _ in raised] == ["overheat"]
    active, raised = health_alarms({"disk_free_mb": 5000, "cpu_temp_c": None}, active)
    assert raised == [] and active == frozenset()
