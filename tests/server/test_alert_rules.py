"""The alert rules as pure functions (server/alerts.py: ``find`` then ``reconcile``), the clock
run forward by hand: a flap under the hold-off raises nothing, a long outage raises once and
resolves when the node is back, an alert repeats only when it changes, a maintenance window
raises nothing, and a node never connected is no offline alert."""
from __future__ import annotations

import datetime as dt

from server import alerts
from server.alerts import (Alarm, Findings, Kind, MediaFailure, Missed, NodeFacts, Policy,
                           State)
from server.models import Alert, User, to_ms

T0 = dt.datetime(2026, 12, 1, 8, 0)
POLICY = Policy(offline_after=dt.timedelta(minutes=5),
                offline_critical_after=dt.timedelta(hours=1))
TECH = User(id=7, username="kythuat")


class Engine:
    """The dispatcher's loop in miniature: every pass finds and reconciles against the alerts
    stored so far (the newest per node and kind), and counts what would be notified."""

    def __init__(self, policy: Policy = POLICY):
        self.policy = policy
        self.alerts: list[Alert] = []
        self.notified: list[tuple[str, str, str]] = []  # (event, kind, severity)

    def current(self) -> dict[tuple[str, str], Alert]:
        out: dict[tuple[str, str], Alert] = {}
        for a in self.alerts:  # keyed as server.alerts.newest_alerts keys them
            out[(a.node_id or "", a.kind)] = a
        return out

    def run(self, now: dt.datetime, *facts: NodeFacts, broker_ok: bool = True,
            watch_since: dt.datetime | None = None) -> Findings:
        found = alerts.find(facts, now, self.policy, broker_ok=broker_ok,
                            watch_since=watch_since)
        for new in alerts.reconcile(self.current(), found, now):
            new.id = len(self.alerts) + 1
            self.alerts.append(new)
        for a in self.alerts:  # what notify.take would send
            if a.revision > a.notified_revision:
                event = "resolved" if a.state == State.RESOLVED else \
                    "opened" if a.revision == 1 else "changed"
                self.notified.append((event, a.kind, a.severity))
                a.notified_revision = a.revision
        return found

    def of(self, kind: Kind) -> list[Alert]:
        return [a for a in self.alerts if a.kind == kind.value]


def node(**kw) -> NodeFacts:
    base = {"node_id": "loa-a", "area_id": 3, "online": True, "last_seen": T0}
    return NodeFacts(**{**base, **kw})


def fresh(at: dt.datetime, **kw) -> NodeFacts:
    """Online and heard from at ``at`` (the pass's time): no silence to speak of."""
    return node(last_seen=at, **kw)


def offline_since(at: dt.datetime, **kw) -> NodeFacts:
    return node(online=False, last_seen=at, **kw)


def minutes(n: float) -> dt.timedelta:
    return dt.timedelta(minutes=n)


def test_a_link_that_flaps_for_less_than_the_hold_off_raises_nothing():
    engine = Engine()
    at = T0
    for _ in range(10):  # down four minutes, up one, again and again
        engine.run(at + minutes(1), offline_since(at))
        engine.run(at + minutes(4), offline_since(at))
        at += minutes(5)
        engine.run(at, node(last_seen=at))
    assert engine.alerts == [] and engine.notified == []


def test_a_long_outage_raises_once_and_resolves_when_the_node_is_back():
    engine = Engine()
    for m in (1, 4, 5, 6, 20, 45):
        engine.run(T0 + minutes(m), offline_since(T0))
    [alert] = engine.of(Kind.NODE_OFFLINE)
    assert alert.state == State.OPEN and alert.severity == "warning"
    assert alert.first_seen == T0 and alert.opened_at == T0 + minutes(5)
    assert alert.last_seen == T0 + minutes(45) and alert.count == 1
    assert engine.notified == [("opened", "node_offline", "warning")]

    back = T0 + minutes(50)
    engine.run(back, node(last_seen=back))
    assert alert.state == State.RESOLVED and alert.resolved_at == back
    assert alert.resolved_by is None and alert.cleared
    assert engine.notified[-1] == ("resolved", "node_offline", "warning")
    engine.run(back + minutes(1), node(last_seen=back + minutes(1)))
    assert len(engine.notified) == 2 and len(engine.alerts) == 1


def test_an_alert_repeats_only_when_its_severity_changes_not_on_every_pass():
    engine = Engine()
    for m in range(5, 121, 5):  # two hours offline, a pass every five minutes
        engine.run(T0 + minutes(m), offline_since(T0))
    [alert] = engine.alerts
    assert alert.severity == "critical" and alert.revision == 2
    assert engine.notified == [("opened", "node_offline", "warning"),
                               ("changed", "node_offline", "critical")]


def test_a_node_silent_while_marked_online_is_offline_but_not_while_the_broker_is_away():
    engine = Engine()
    # the dispatcher lost its broker: nothing about nodes being offline is judged
    engine.run(T0 + minutes(30), offline_since(T0), broker_ok=False)
    assert engine.alerts == []
    # back on the broker since T0+29: a node still marked online is silent from then on only
    watch = T0 + minutes(29)
    engine.run(T0 + minutes(31), node(last_seen=T0), watch_since=watch)
    assert engine.alerts == []
    engine.run(T0 + minutes(35), node(last_seen=T0), watch_since=watch)
    [alert] = engine.alerts
    assert alert.detail["key"] == "alertd.node_silent"


def test_a_node_in_its_maintenance_window_raises_none_and_its_alerts_still_resolve():
    engine = Engine()
    until = T0 + minutes(60)
    for m in (10, 30, 59):
        engine.run(T0 + minutes(m), offline_since(T0, maintenance_until=until))
    assert engine.alerts == []
    # the window ends with the node still away: the alert comes now
    engine.run(T0 + minutes(61), offline_since(T0, maintenance_until=until))
    [alert] = engine.alerts
    assert alert.state == State.OPEN

    # a window set while the alert is open: no repeat when it turns critical, yet it resolves
    later = T0 + minutes(200)
    engine.run(T0 + minutes(90), offline_since(T0, maintenance_until=later))
    assert alert.severity == "critical" and alert.revision == 1
    engine.run(T0 + minutes(95), node(last_seen=T0 + minutes(95), maintenance_until=later))
    assert alert.state == State.RESOLVED
    assert [e for e, _k, _s in engine.notified] == ["opened", "resolved"]


def test_nodes_never_connected_are_no_offline_alert():
    engine = Engine()
    found = engine.run(T0 + dt.timedelta(days=3), node(online=False, last_seen=None))
    assert engine.alerts == [] and not found.conditions


def test_an_alert_resolved_by_hand_is_not_raised_again_until_its_condition_clears():
    engine = Engine()
    engine.run(T0 + minutes(10), offline_since(T0))
    [alert] = engine.alerts
    alerts.acknowledge(alert, T0 + minutes(11), TECH, "đang tới")
    assert alert.state == State.ACKNOWLEDGED and alert.acknowledged_by == TECH.id
    alerts.resolve(alert, T0 + minutes(12), TECH, "thay modem")
    for m in (15, 30, 60):
        engine.run(T0 + minutes(m), offline_since(T0))
    assert len(engine.alerts) == 1 and alert.resolved_by == TECH.id
    # back, then away again for long: a new episode, a new alert
    engine.run(T0 + minutes(70), node(last_seen=T0 + minutes(70)))
    engine.run(T0 + minutes(80), offline_since(T0 + minutes(71)))
    assert [a.state for a in engine.alerts] == [State.RESOLVED, State.OPEN]


def test_a_revoked_node_has_its_alerts_resolved():
    engine = Engine()
    engine.run(T0 + minutes(10), offline_since(T0))
    engine.run(T0 + minutes(11), offline_since(T0, revoked=True))
    assert engine.alerts[0].state == State.RESOLVED


# --- the node's own alarms ---------------------------------------------------------------------

def telemetry(at: dt.datetime, **fields) -> dict:
    return {"v": 1, "ts": to_ms(at), **fields}


def alarm(at: dt.datetime, code: str, n: int = 1) -> Alarm:
    return Alarm(f"e-{code}-{n}", to_ms(at), code, f"{code} detail")


def test_an_unregistered_modem_is_said_in_the_readers_words():
    engine = Engine()
    lost = alarm(T0, "modem_unregistered")
    engine.run(T0 + minutes(0.1), node(alarms=(lost,), telemetry=telemetry(
        T0, net={"registration": "denied", "modem_state": "enabled"})))
    [alert] = engine.of(Kind.MODEM_UNREGISTERED)
    assert alerts.detail_text(alert, "vi", "UTC") == \
        "Modem 4G chưa đăng ký mạng (trạng thái: bị nhà mạng từ chối)."
    assert alerts.detail_text(alert, "en", "UTC") == \
        "The 4G modem is not registered (state: denied by the operator)."


def test_overheat_from_the_alarm_stays_while_telemetry_says_hot_and_resolves_when_cool():
    engine = Engine()
    hot = alarm(T0, "overheat")
    engine.run(T0 + minutes(0.1), node(alarms=(hot,), telemetry=telemetry(T0 - minutes(1),
                                                                          cpu_temp_c=70)))
    [alert] = engine.of(Kind.OVERHEAT)
    assert alert.state == State.OPEN
    engine.run(T0 + minutes(1), node(alarms=(hot,), telemetry=telemetry(T0 + minutes(1),
                                                                        cpu_temp_c=84.5)))
    assert alert.state == State.OPEN and alert.revision == 1
    assert alerts.detail_text(alert, "en", "Asia/Ho_Chi_Minh") == "CPU at 84.5 °C."
    engine.run(T0 + minutes(2), node(alarms=(hot,), telemetry=telemetry(T0 + minutes(2),
                                                                        cpu_temp_c=60)))
    assert alert.state == State.RESOLVED
    assert engine.notified == [("opened", "overheat", "warning"),
                               ("resolved", "overheat", "warning")]


def test_a_clock_jump_alarm_opens_a_clock_alert_that_says_what_to_check():
    engine = Engine()
    jump = Alarm("e-jump", to_ms(T0), "clock_jump",
                 "the clock jumped forward by 7200 s (wall clock against the monotonic clock)")
    engine.run(T0 + minutes(1), fresh(T0 + minutes(1), alarms=(jump,)))
    [alert] = engine.of(Kind.CLOCK_OFF)
    assert alert.state == State.OPEN
    text = alerts.detail_text(alert, "en", "Asia/Ho_Chi_Minh")
    assert "clock stepped" in text and "forward by 7200 s" in text
    assert "Đồng hồ thiết bị bị nhảy" in alerts.detail_text(alert, "vi", "Asia/Ho_Chi_Minh")


def test_stale_telemetry_of_an_offline_node_neither_raises_nor_resolves():
    engine = Engine()
    engine.run(T0, node(telemetry=telemetry(T0, disk_free_mb=120)))
    [alert] = engine.of(Kind.DISK_LOW)
    engine.run(T0 + minutes(1), offline_since(T0, telemetry=telemetry(T0, disk_free_mb=900)))
    assert alert.state == State.OPEN


def test_an_amplifier_fault_is_resolved_by_hand_only_and_a_new_alarm_raises_it_again():
    engine = Engine()
    first = alarm(T0, "amp_fault")
    engine.run(T0 + minutes(1), node(alarms=(first,)))
    [alert] = engine.of(Kind.AMP_FAULT)
    assert alert.severity == "critical"
    assert alerts.detail_text(alert, "vi", "UTC") == \
        "Thiết bị báo lỗi bộ khuếch đại: amp_fault detail"
    assert alerts.detail_text(alert, "en", "UTC") == \
        "The node reports amplifier fault: amp_fault detail"
    engine.run(T0 + dt.timedelta(days=2), fresh(T0 + dt.timedelta(days=2)))  # alarm aged out
    assert alert.state == State.OPEN
    alerts.resolve(alert, T0 + dt.timedelta(days=2), TECH)
    again = alarm(T0 + dt.timedelta(days=3), "amp_fault", 2)
    engine.run(T0 + dt.timedelta(days=3, minutes=1),
               fresh(T0 + dt.timedelta(days=3, minutes=1), alarms=(again,)))
    assert [a.state for a in engine.of(Kind.AMP_FAULT)] == [State.RESOLVED, State.OPEN]


def test_the_same_alarm_again_counts_without_a_repeat():
    engine = Engine()
    a1, a2 = alarm(T0, "amp_fault", 1), alarm(T0 + minutes(30), "amp_fault", 2)
    engine.run(T0 + minutes(1), fresh(T0 + minutes(1), alarms=(a1,)))
    engine.run(T0 + minutes(31), fresh(T0 + minutes(31), alarms=(a1, a2)))
    [alert] = engine.alerts
    assert alert.count == 2 and alert.revision == 1 and len(engine.notified) == 1


def test_a_player_failing_resolves_once_a_play_completes():
    engine = Engine()
    failing = alarm(T0, "player_failing")
    engine.run(T0 + minutes(1), node(alarms=(failing,)))
    [alert] = engine.alerts
    engine.run(T0 + minutes(9), fresh(T0 + minutes(9), alarms=(failing,),
                                      last_completed_ms=to_ms(T0 + minutes(8))))
    assert alert.state == State.RESOLVED


def test_the_clock_off_past_the_limit_raises_and_back_in_step_resolves():
    engine = Engine()
    engine.run(T0, node(telemetry=telemetry(T0, clock_offset_ms=-80)))
    assert engine.alerts == []
    engine.run(T0 + minutes(1), fresh(T0 + minutes(1),
                                      telemetry=telemetry(T0 + minutes(1), clock_offset_ms=450)))
    [alert] = engine.of(Kind.CLOCK_OFF)
    assert alerts.detail_text(alert, "vi", "Asia/Ho_Chi_Minh") == \
        "Đồng hồ lệch 450 ms so với giờ chuẩn (giới hạn 100 ms)."
    engine.run(T0 + minutes(2), fresh(T0 + minutes(2),
                                      telemetry=telemetry(T0 + minutes(2), clock_offset_ms=3)))
    assert alert.state == State.RESOLVED


# --- media and missed slots ----------------------------------------------------------------------

def failure(n: int, at: dt.datetime, reason: str = "media_unavailable") -> MediaFailure:
    return MediaFailure(f"cmd:c{n}", to_ms(at), reason)


def test_media_failing_needs_failures_that_keep_coming():
    engine = Engine()
    two = (failure(1, T0), failure(2, T0 + minutes(10)))
    engine.run(T0 + minutes(11), fresh(T0 + minutes(11), media_failures=two))
    assert engine.alerts == []  # two failures may be a passing outage of the web server
    three = (*two, failure(3, T0 + minutes(20), "media_mismatch"))
    engine.run(T0 + minutes(21), fresh(T0 + minutes(21), media_failures=three))
    [alert] = engine.of(Kind.MEDIA_FAILING)
    assert alert.count == 3 and alert.detail_class == "media_mismatch,media_unavailable"
    assert alerts.detail_text(alert, "en", "UTC") == (
        "3 plays could not get their audio file (the file downloaded is not the approved audio,"
        " the node could not download the audio file).")
    assert "(tệp tải về không phải tệp âm thanh đã duyệt, thiết bị không tải được tệp âm thanh)" \
        in alerts.detail_text(alert, "vi", "UTC")
    # a play completes after the last failure: downloads work again
    engine.run(T0 + minutes(40), fresh(T0 + minutes(40), media_failures=three,
                                      last_completed_ms=to_ms(T0 + minutes(35))))
    assert alert.state == State.RESOLVED


def missed(n: int, at: dt.datetime, reason: str = "no_report") -> Missed:
    return Missed(f"slot:s{n}", reason, at, 40 + n)


def test_missed_slots_raise_one_alert_per_node_that_counts_them():
    engine = Engine()
    engine.run(T0, node(missed=(missed(1, T0 - minutes(60)),)))
    [alert] = engine.of(Kind.SLOT_MISSED)
    engine.run(T0 + minutes(10), fresh(T0 + minutes(10), missed=(
        missed(1, T0 - minutes(60)), missed(2, T0 - minutes(20)))))
    assert len(engine.alerts) == 1 and alert.count == 2 and alert.revision == 1
    assert "2 slots missed" in alerts.detail_text(alert, "en", "UTC")
    # another reason is another class: it repeats
    engine.run(T0 + minutes(20), fresh(T0 + minutes(20), missed=(
        missed(1, T0 - minutes(60)), missed(3, T0 - minutes(5), "media_missing"))))
    assert alert.revision == 2 and alert.count == 3


def test_a_missed_slot_that_ages_out_stays_but_a_late_report_resolves_it():
    engine = Engine()
    engine.run(T0, node(missed=(missed(1, T0 - minutes(60)),)))
    [alert] = engine.alerts
    later = T0 + dt.timedelta(hours=8)
    engine.run(later, fresh(later))  # out of the lookback: nobody saw it air
    assert alert.state == State.OPEN
    engine.run(later + minutes(1), fresh(later, judged_ok=frozenset({"slot:s1"})))
    assert alert.state == State.RESOLVED


def test_missed_slots_of_a_node_that_is_offline_wait_for_its_late_reports():
    engine = Engine()
    engine.run(T0 + minutes(1), offline_since(T0, missed=(missed(1, T0 - minutes(30)),)))
    assert engine.of(Kind.SLOT_MISSED) == []


def test_silence_is_never_judged_shorter_than_three_telemetry_periods():
    engine = Engine(Policy(offline_after=dt.timedelta(seconds=20),
                           silent_after=dt.timedelta(seconds=90)))
    engine.run(T0 + dt.timedelta(seconds=60), node(last_seen=T0))  # two telemetry periods late
    assert engine.alerts == []
    engine.run(T0 + dt.timedelta(seconds=95), node(last_seen=T0))
    assert [a.kind for a in engine.alerts] == ["node_offline"]
    from server.config import load_settings
    settings = load_settings("/nonexistent", {"alert_offline_after_s": 20,
                                              "node_telemetry_s": 30}, environ={})
    assert Policy.from_settings(settings).silent_after == dt.timedelta(seconds=90)
