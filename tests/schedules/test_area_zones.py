"""A series expanded in an area's own zone (schedules/slots.py with BroadcastSpec.tz): the rule's
hours are local to that zone, across its daylight-saving changes, while Vietnam's zone keeps one
offset all year; the calendar export and the rule in words follow the zone too."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from schedules.describe import describe
from schedules.ical import slots_to_ics
from schedules.slots import BroadcastSpec, Content, ContentKind, Priority, broadcast_slots
from tests.schedules.times import VN, at

BERLIN = ZoneInfo("Europe/Berlin")  # CET +01, CEST +02 from 29 March to 25 October 2026
UTC = dt.UTC
HALF_HOUR = dt.timedelta(minutes=30)
NEWS = Content(ContentKind.BULLETIN, 7)


def six_daily(tz: str, start: dt.datetime,
              exdates: tuple[dt.datetime, ...] = ()) -> BroadcastSpec:
    return BroadcastSpec(broadcast_id=9, start_at=start, duration=HALF_HOUR,
                         priority=Priority.NORMAL, content=NEWS,
                         recurrence="FREQ=DAILY;BYHOUR=6;BYMINUTE=0", exdates=exdates, tz=tz)


def utc_starts(slots) -> list[str]:
    return [s.start_at.astimezone(UTC).strftime("%m-%d %H:%M") for s in slots]


def test_six_in_berlin_stays_six_local_across_the_spring_change():
    spec = six_daily("Europe/Berlin", at(BERLIN, 2026, 3, 27, 0, 0))
    slots = broadcast_slots(spec, at(BERLIN, 2026, 3, 27), at(BERLIN, 2026, 3, 31))
    assert [s.start_at.astimezone(BERLIN).strftime("%d %H:%M") for s in slots] == [
        "27 06:00", "28 06:00", "29 06:00", "30 06:00"]
    # the instant moves an hour earlier with the clocks: 05:00Z in winter, 04:00Z in summer
    assert utc_starts(slots) == ["03-27 05:00", "03-28 05:00", "03-29 04:00", "03-30 04:00"]
    assert slots[2].slot_id == "b9-20260329T040000Z"
    assert all(s.end_at - s.start_at == HALF_HOUR for s in slots)


def test_six_in_berlin_stays_six_local_across_the_autumn_change():
    spec = six_daily("Europe/Berlin", at(BERLIN, 2026, 10, 23, 0, 0))
    slots = broadcast_slots(spec, at(BERLIN, 2026, 10, 23), at(BERLIN, 2026, 10, 27))
    assert {s.start_at.astimezone(BERLIN).strftime("%H:%M") for s in slots} == {"06:00"}
    assert utc_starts(slots) == ["10-23 04:00", "10-24 04:00", "10-25 05:00", "10-26 05:00"]
    assert slots[2].start_at - slots[1].start_at == dt.timedelta(hours=25)  # the long night


def test_the_same_rule_in_vietnam_keeps_one_offset_all_year():
    for month, day in ((3, 27), (10, 23)):
        spec = six_daily("Asia/Ho_Chi_Minh", at(VN, 2026, month, day, 0, 0))
        slots = broadcast_slots(spec, at(VN, 2026, month, day), at(VN, 2026, month, day + 4))
        assert {s.start_at.astimezone(UTC).strftime("%H:%M") for s in slots} == {"23:00"}
        assert {b.start_at - a.start_at for a, b in zip(slots, slots[1:], strict=False)} == {
            dt.timedelta(days=1)}


def test_one_anchor_gives_other_instants_in_another_zone():
    """start_at is an instant; the rule's hours are read in the area's zone, not the anchor's."""
    anchor = at(UTC, 2026, 5, 1, 0, 0)
    berlin = broadcast_slots(six_daily("Europe/Berlin", anchor), anchor, anchor + dt.timedelta(1))
    hanoi = broadcast_slots(six_daily("Asia/Ho_Chi_Minh", anchor), anchor,
                            anchor + dt.timedelta(1))
    assert utc_starts(berlin) == ["05-01 04:00"]  # 06:00 CEST
    assert utc_starts(hanoi) == ["05-01 23:00"]  # 06:00 on 2 May in Vietnam


def test_a_skipped_occurrence_is_matched_in_the_area_zone():
    spec = six_daily("Europe/Berlin", at(BERLIN, 2026, 3, 27, 0, 0),
                     exdates=(at(BERLIN, 2026, 3, 29, 6, 0),))
    slots = broadcast_slots(spec, at(BERLIN, 2026, 3, 27), at(BERLIN, 2026, 3, 31))
    assert [s.start_at.astimezone(BERLIN).day for s in slots] == [27, 28, 30]


def test_a_lunar_rule_keeps_vietnam_lunar_days_at_local_hours_of_the_area():
    """Mùng 1 Tết Bính Ngọ is 17 February 2026 in Vietnam: a ward in Berlin airs at 06:00 there."""
    spec = BroadcastSpec(broadcast_id=3, start_at=at(BERLIN, 2026, 1, 1), duration=HALF_HOUR,
                         priority=Priority.NORMAL, content=NEWS,
                         recurrence="FREQ=LUNARMONTHLY;BYMONTHDAY=1;BYMONTH=1;BYHOUR=6",
                         tz="Europe/Berlin")
    slots = broadcast_slots(spec, at(BERLIN, 2026, 1, 1), at(BERLIN, 2026, 12, 31))
    assert [s.start_at.astimezone(BERLIN).isoformat() for s in slots] == [
        "2026-02-17T06:00:00+01:00"]


def test_the_calendar_names_the_area_zone_and_keeps_utc_times():
    spec = six_daily("Europe/Berlin", at(BERLIN, 2026, 3, 28, 0, 0))
    slots = broadcast_slots(spec, at(BERLIN, 2026, 3, 28), at(BERLIN, 2026, 3, 30))
    text = slots_to_ics(slots, now=at(UTC, 2026, 3, 1), calendar_name="Ortsteil Mitte",
                        title=lambda s: "Nachrichten", tz="Europe/Berlin")
    assert "X-WR-TIMEZONE:Europe/Berlin\r\n" in text
    assert "DTSTART:20260328T050000Z\r\n" in text and "DTSTART:20260329T040000Z\r\n" in text
    plain = slots_to_ics(slots, now=at(UTC, 2026, 3, 1), calendar_name="x", title=lambda s: "")
    assert "X-WR-TIMEZONE" not in plain


def test_the_rule_in_words_says_the_hours_of_the_area_zone():
    start = at(UTC, 2026, 3, 2, 5, 30)  # 06:30 in Berlin, 12:30 in Vietnam
    assert describe("FREQ=DAILY", start, tz="Europe/Berlin") == "Hằng ngày lúc 06:30"
    assert describe("FREQ=DAILY", start, tz="Asia/Ho_Chi_Minh", lang="en") == \
        "Every day at 12:30"
