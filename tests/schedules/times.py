"""Wall-clock times as the calendar tests write them: ``at(zone, 2026, 1, 2, 6, 30)``, and
``vn(...)`` for the same in Asia/Ho_Chi_Minh, the default zone."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from schedules.recurrence import DEFAULT_TZ

VN = ZoneInfo(DEFAULT_TZ)


def at(zone: dt.tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=zone)


def vn(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       second: int = 0) -> dt.datetime:
    return at(VN, year, month, day, hour, minute, second)
