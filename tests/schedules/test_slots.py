"""Slots and conflicts (schedules/slots.py), called directly with an injected time."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.recurrence import RecurrenceError, RecurrenceErrorCode
from schedules.slots import (BroadcastSpec, Content, ContentKind, FixedClock, Override, Priority,
                             Slot, broadcast_slots, build_slots, check_recurrence, expand_rule,
                             find_conflicts, future_only, is_occurrence, slot_id, to_ms)
from tests.schedules.times import VN, vn

UTC = dt.UTC
MIN = dt.timedelta(minutes=1)
NEWS = Content(ContentKind.BULLETIN, 7)
MORNING = Content(ContentKind.PROGRAMME, 3)


def daily(broadcast_id: int = 1, **changes: object) -> BroadcastSpec:
    values: dict[str, object] = {
        "broadcast_id": broadcast_id, "start_at": vn(2026, 1, 1, 0, 0),
        "duration": 30 * MIN, "priority": Priority.NORMAL, "content": MORNING,
        "recurrence": "FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0"}
    values.update(changes)
    return BroadcastSpec(**values)  # type: ignore[arg-type]


def one(broadcast_id: int, start: dt.datetime, minutes: int, priority: int) -> Slot:
    return build_slots(broadcast_id, [start], duration=minutes * MIN, priority=priority,
                       content=NEWS)[0]


def test_slot_ids_come_from_broadcast_and_original_start():
    assert slot_id(42, vn(2026, 1, 2, 6, 0)) == "b42-20260101T230000Z"
    assert slot_id(42, dt.datetime(2026, 1, 1, 23, 0, 0, 999, tzinfo=UTC)) == \
        "b42-20260101T230000Z"
    assert to_ms(dt.datetime(2026, 1, 1, tzinfo=UTC)) == 1767225600000


def test_build_slots_from_occurrences():
    occurrences = expand_rule("FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0", vn(2026, 1, 1),
                              vn(2026, 1, 1), vn(2026, 1, 2))
    slots = build_slots(5, occurrences, duration=30 * MIN, priority=3, content=MORNING)
    assert [(s.start_at.astimezone(VN).strftime("%H:%M"), s.end_at - s.start_at) for s in slots] \
        == [("06:00", 30 * MIN), ("17:00", 30 * MIN)]
    assert all(s.broadcast_id == 5 and s.content == MORNING and not s.moved for s in slots)
    with pytest.raises(ValueError):
        build_slots(5, occurrences, duration=dt.timedelta(0), priority=3, content=MORNING)


def test_a_moved_occurrence_keeps_its_id_and_a_cancelled_one_leaves_no_slot():
    spec = daily()
    plain = broadcast_slots(spec, vn(2026, 1, 2), vn(2026, 1, 3))
    overrides = [Override(vn(2026, 1, 2, 6, 0), start_at=vn(2026, 1, 2, 7, 15)),
                 Override(vn(2026, 1, 2, 17, 0), cancelled=True)]
    changed = broadcast_slots(spec, vn(2026, 1, 2), vn(2026, 1, 3), overrides)
    assert len(changed) == 1
    assert changed[0].slot_id == plain[0].slot_id
    assert changed[0].moved and changed[0].start_at == vn(2026, 1, 2, 7, 15)
    assert changed[0].end_at == vn(2026, 1, 2, 7, 45)
    assert plain[1].slot_id not in {s.slot_id for s in changed}


def test_one_occurrence_gets_another_bulletin_and_length():
    news = Content(ContentKind.BULLETIN, 99)
    slots = broadcast_slots(daily(), vn(2026, 1, 2), vn(2026, 1, 3),
                            [Override(vn(2026, 1, 2, 17, 0), content=news, duration=10 * MIN,
                                      priority=Priority.PRIORITY)])
    assert [(s.content, s.end_at - s.start_at, s.priority) for s in slots] == [
        (MORNING, 30 * MIN, 3), (news, 10 * MIN, 5)]


def test_moves_across_the_window_edge():
    spec = daily()
    into = Override(vn(2026, 1, 3, 6, 0), start_at=vn(2026, 1, 2, 20, 0))
    out = Override(vn(2026, 1, 2, 17, 0), start_at=vn(2026, 1, 4, 9, 0))
    slots = broadcast_slots(spec, vn(2026, 1, 2), vn(2026, 1, 3), [into, out])
    assert [s.slot_id for s in slots] == [slot_id(1, vn(2026, 1, 2, 6, 0)),
                                          slot_id(1, vn(2026, 1, 3, 6, 0))]
    # an override for an instant the rule never produces is ignored
    ghost = Override(vn(2026, 1, 3, 9, 0), start_at=vn(2026, 1, 2, 21, 0))
    assert len(broadcast_slots(spec, vn(2026, 1, 2), vn(2026, 1, 3), [ghost])) == 2


def test_a_slot_playing_at_the_window_start_is_in_the_window():
    slots = broadcast_slots(daily(), vn(2026, 1, 2, 6, 10), vn(2026, 1, 2, 12, 0))
    assert [s.start_at for s in slots] == [vn(2026, 1, 2, 6, 0)]


def test_one_off_broadcast_and_lunar_broadcast():
    once = BroadcastSpec(9, vn(2026, 1, 2, 8, 0), 5 * MIN, Priority.EMERGENCY, NEWS)
    assert [s.slot_id for s in broadcast_slots(once, vn(2026, 1, 1), vn(2026, 1, 3))] == [
        "b9-20260102T010000Z"]
    assert broadcast_slots(once, vn(2026, 1, 3), vn(2026, 1, 4)) == []
    lunar = daily(2, recurrence="FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6;BYMINUTE=0")
    slots = broadcast_slots(lunar, vn(2026, 1, 1), vn(2026, 2, 1))
    assert [s.start_at.astimezone(VN).date() for s in slots] == [dt.date(2026, 1, 3),
                                                                 dt.date(2026, 1, 19)]


def test_is_occurrence_applies_exdates():
    spec = daily(exdates=(vn(2026, 1, 2, 6, 0),))
    assert is_occurrence(spec, vn(2026, 1, 2, 17, 0))
    assert not is_occurrence(spec, vn(2026, 1, 2, 6, 0))
    assert not is_occurrence(spec, vn(2026, 1, 2, 7, 0))


def test_check_recurrence_takes_both_kinds_of_rule():
    check_recurrence("FREQ=WEEKLY;BYDAY=MO", vn(2026, 1, 1))
    check_recurrence("FREQ=LUNARMONTHLY;BYMONTHDAY=1", vn(2026, 1, 1))
    for text in ("FREQ=MINUTELY", "FREQ=LUNARMONTHLY;BYMONTHDAY=40"):
        with pytest.raises(RecurrenceError):
            check_recurrence(text, vn(2026, 1, 1))
    with pytest.raises(RecurrenceError) as raised:
        check_recurrence("FREQ=DAILY;UNTIL=20250101", vn(2026, 1, 1))
    assert raised.value.code == RecurrenceErrorCode.NEVER_OCCURS


def test_editing_a_series_changes_only_its_future_slots():
    clock = FixedClock(vn(2026, 1, 2, 12, 0))
    old = broadcast_slots(daily(), vn(2026, 1, 2), vn(2026, 1, 4))
    new = broadcast_slots(daily(recurrence="FREQ=DAILY;BYHOUR=7;BYMINUTE=0"), vn(2026, 1, 2),
                          vn(2026, 1, 4))
    merged = future_only(old, new, clock.now())
    assert [s.start_at.astimezone(VN).strftime("%d %H:%M") for s in merged] == [
        "02 06:00", "03 07:00"]
    clock.advance(dt.timedelta(days=1))
    assert clock.now() == vn(2026, 1, 3, 12, 0)


def test_overlap_on_the_same_node_is_a_clash():
    existing = {"hp-01-a": [one(1, vn(2026, 1, 2, 6, 0), 30, 3)]}
    new = {"hp-01-a": [one(2, vn(2026, 1, 2, 6, 20), 15, 3)],
           "hp-02-a": [one(2, vn(2026, 1, 2, 6, 20), 15, 3)]}
    report = find_conflicts(existing, new, now=vn(2026, 1, 1))
    assert not report.ok
    assert [(c.node_id, c.existing.broadcast_id, c.new.broadcast_id) for c in report.clashes] \
        == [("hp-01-a", 1, 2)]


def test_back_to_back_slots_do_not_clash():
    existing = {"n": [one(1, vn(2026, 1, 2, 6, 0), 30, 3)]}
    new = {"n": [one(2, vn(2026, 1, 2, 6, 30), 30, 3), one(3, vn(2026, 1, 2, 5, 30), 30, 3)]}
    assert find_conflicts(existing, new, now=vn(2026, 1, 1)) == find_conflicts({}, {}, now=vn(
        2026, 1, 1))


def test_higher_priority_preempts_and_override_allows():
    existing = {"n": [one(1, vn(2026, 1, 2, 6, 0), 30, Priority.NORMAL)]}
    urgent = {"n": [one(2, vn(2026, 1, 2, 6, 10), 5, Priority.EMERGENCY)]}
    report = find_conflicts(existing, urgent, now=vn(2026, 1, 1))
    assert report.ok and len(report.preempts) == 1 and not report.overridden
    equal = {"n": [one(3, vn(2026, 1, 2, 6, 10), 5, Priority.NORMAL)]}
    assert not find_conflicts(existing, equal, now=vn(2026, 1, 1)).ok
    lower = {"n": [one(4, vn(2026, 1, 2, 6, 10), 5, 1)]}
    report = find_conflicts(existing, lower, now=vn(2026, 1, 1), override=True)
    assert report.ok and len(report.overridden) == 1


def test_finished_slots_and_the_broadcasts_own_slots_do_not_clash():
    existing = {"n": [one(1, vn(2026, 1, 2, 6, 0), 30, 3), one(2, vn(2026, 1, 2, 17, 0), 30, 3)]}
    new = {"n": [one(3, vn(2026, 1, 2, 6, 15), 30, 3), one(2, vn(2026, 1, 2, 17, 10), 30, 3)]}
    report = find_conflicts(existing, new, now=vn(2026, 1, 2, 6, 30))
    # the 06:00 slot is over at 06:30; broadcast 2 meeting itself is an edit, not a clash
    assert report.ok


def test_a_long_existing_slot_is_found_among_many_short_ones():
    existing = [one(1, vn(2026, 1, 2, 0, 0), 600, 3)]
    existing += [one(i, vn(2026, 1, 2, 11, 0) + i * MIN, 1, 3) for i in range(2, 200)]
    report = find_conflicts({"n": existing}, {"n": [one(500, vn(2026, 1, 2, 9, 0), 5, 3)]},
                            now=vn(2026, 1, 1))
    assert [c.existing.broadcast_id for c in report.clashes] == [1]


def test_a_new_daily_broadcast_against_a_ward_of_a_thousand_nodes():
    old = broadcast_slots(daily(1), vn(2026, 1, 1), vn(2026, 1, 2))
    new = broadcast_slots(daily(2, recurrence="FREQ=DAILY;BYHOUR=17;BYMINUTE=15"),
                          vn(2026, 1, 1), vn(2026, 1, 2))
    nodes = [f"node-{i}" for i in range(1000)]
    report = find_conflicts({n: old for n in nodes}, {n: new for n in nodes}, now=vn(2026, 1, 1))
    assert len(report.clashes) == 1000
    assert {c.existing.start_at for c in report.clashes} == {vn(2026, 1, 1, 17, 0)}


def test_nodes_sharing_their_slots_get_the_same_clashes_as_nodes_with_their_own():
    old = broadcast_slots(daily(1), vn(2026, 1, 1), vn(2026, 1, 3))
    other = broadcast_slots(daily(3, recurrence="FREQ=DAILY;BYHOUR=9;BYMINUTE=0"),
                            vn(2026, 1, 1), vn(2026, 1, 3))
    new = broadcast_slots(daily(2), vn(2026, 1, 1), vn(2026, 1, 3))
    shared = {"a": old, "b": old, "c": other, "d": old}  # one list object for a, b and d
    own = {n: list(slots) for n, slots in shared.items()}  # a list of its own for each
    report = find_conflicts(shared, {n: new for n in shared}, now=vn(2026, 1, 1))
    assert report == find_conflicts(own, {n: list(new) for n in own}, now=vn(2026, 1, 1))
    # the 6 a.m. and 5 p.m. slots of two days meet on a, b and d, never on c (9 a.m.)
    assert [c.node_id for c in report.clashes] == ["a"] * 4 + ["b"] * 4 + ["d"] * 4


def test_naive_times_are_refused():
    with pytest.raises(RecurrenceError):
        find_conflicts({}, {}, now=dt.datetime(2026, 1, 1))
    with pytest.raises(RecurrenceError):
        slot_id(1, dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError):
        build_slots(1, [vn(2026, 1, 1)], duration=MIN, priority=3, content=NEWS,
                    overrides=[Override(vn(2026, 1, 1), cancelled=True),
                               Override(vn(2026, 1, 1), start_at=vn(2026, 1, 1, 1))])
