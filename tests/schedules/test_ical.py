"""Slots exported as iCalendar (schedules/ical.py)."""
from __future__ import annotations

import datetime as dt

from schedules.ical import escape_text, fold, slots_to_ics
from schedules.slots import (BroadcastSpec, Content, ContentKind, Override, Priority,
                             broadcast_slots)
from tests.schedules.times import vn



SPEC = BroadcastSpec(4, vn(2026, 1, 1), dt.timedelta(minutes=30), Priority.NORMAL,
                     Content(ContentKind.PROGRAMME, 1), "FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0")


def test_each_slot_is_an_event_with_its_slot_id_as_uid():
    slots = broadcast_slots(SPEC, vn(2026, 1, 2), vn(2026, 1, 3),
                            [Override(vn(2026, 1, 2, 17, 0), start_at=vn(2026, 1, 2, 18, 0))])
    text = slots_to_ics(slots, now=vn(2026, 1, 1, 12, 0), calendar_name="Phường Bến Nghé",
                        title=lambda s: "Chương trình sáng, chiều; tin tức")
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n")
    assert text.endswith("END:VCALENDAR\r\n")
    assert text.count("BEGIN:VEVENT") == 2
    assert "UID:b4-20260101T230000Z@loaphuong\r\n" in text
    assert "DTSTART:20260101T230000Z\r\nDTEND:20260101T233000Z\r\n" in text
    assert "DTSTART:20260102T110000Z\r\n" in text  # moved from 17:00 to 18:00 local
    assert "X-LOAPHUONG-ORIGINAL-START:20260102T100000Z" in text
    assert "SUMMARY:Chương trình sáng\\, chiều\\; tin tức\r\n" in text
    assert "DTSTAMP:20260101T050000Z" in text and "PRIORITY:7" in text


def test_long_lines_fold_at_75_octets_without_splitting_a_character():
    line = "SUMMARY:" + "Thông báo lịch tiêm chủng " * 6
    folded = fold(line)
    parts = folded.split("\r\n")
    assert all(len(p.encode("utf-8")) <= 75 for p in parts)
    assert "".join(p[1:] if i else p for i, p in enumerate(parts)) == line
    assert escape_text("a\\b\nc") == "a\\\\b\\nc"
