"""Slots as an iCalendar (RFC 5545) document, for `GET /api/v1/areas/{id}/schedule.ics`.

Pure text building: one VEVENT per slot, times in UTC, the slot id as the event's UID so that a
staff calendar updates a moved occurrence instead of adding a second one. UTC times are exact
in every zone (no VTIMEZONE to keep in step with the zone database); the area's zone goes in
X-WR-TIMEZONE, which calendar programs use to show the calendar in it.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from .recurrence import UTC, require_aware
from .slots import Slot

PRODID = "-//LoaPhuong//Schedule//VI"
UID_DOMAIN = "loaphuong"


def escape_text(value: str) -> str:
    """A TEXT value as RFC 5545 §3.3.11 writes it."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """A content line folded at 75 octets (§3.1), never inside a UTF-8 character."""
    out: list[str] = []
    current, size = "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


def _stamp(value: dt.datetime) -> str:
    return require_aware(value, "datetime").astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def slots_to_ics(slots: Iterable[Slot], *, now: dt.datetime, calendar_name: str,
                 title: Callable[[Slot], str], description: Callable[[Slot], str] | None = None,
                 tz: str | None = None) -> str:
    """An iCalendar document (CRLF lines) with one event per slot, in start order.

    `title` (and `description`) give each slot's text, already translated; `now` is the
    DTSTAMP every event carries; `tz`, the IANA zone the calendar is shown in (X-WR-TIMEZONE).
    """
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH", f"X-WR-CALNAME:{escape_text(calendar_name)}"]
    if tz is not None:
        lines.append(f"X-WR-TIMEZONE:{escape_text(tz)}")
    stamp = _stamp(now)
    for slot in sorted(slots):
        lines += ["BEGIN:VEVENT", f"UID:{slot.slot_id}@{UID_DOMAIN}", f"DTSTAMP:{stamp}",
                  f"DTSTART:{_stamp(slot.start_at)}", f"DTEND:{_stamp(slot.end_at)}",
                  f"SUMMARY:{escape_text(title(slot))}"]
        if description is not None:
            lines.append(f"DESCRIPTION:{escape_text(description(slot))}")
        if slot.moved:
            lines.append(f"X-LOAPHUONG-ORIGINAL-START:{_stamp(slot.original_start)}")
        lines += [f"PRIORITY:{_ics_priority(slot.priority)}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) + "\r\n" for line in lines)


def _ics_priority(priority: int) -> int:
    """iCalendar's PRIORITY runs the other way (1 highest, 9 lowest, 0 undefined)."""
    return max(1, min(9, 10 - priority))
