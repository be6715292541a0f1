"""Vietnam's lunar calendar (âm lịch) for schedules: lunar-day rules and lunar holidays as dates.

RRULE has no lunar scale, so a rule such as "mùng 1 and rằm at 06:00" is expanded here into
concrete local times. The calendar itself comes from lunar-vn, which computes Hồ Ngọc Đức's
rules at UTC+7 (Vietnam's calendar, which differs from the Chinese one in some years: Tết
1985-01-21 and 2007-02-17). Pure functions, no I/O.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import lunar_vn

from .recurrence import (DEFAULT_TZ, MAX_OCCURRENCES, UTC, RecurrenceError, RecurrenceErrorCode,
                         localize, require_aware, zone)

VIETNAM_UTC_OFFSET_HOURS = 7.0
# Gregorian years the calendar library covers.
FIRST_YEAR, LAST_YEAR = lunar_vn.SUPPORTED_YEAR_RANGE
LUNAR_FREQ = "LUNARMONTHLY"


class LunarError(ValueError):
    """A lunar date that does not exist (30th of a short month, a leap month a year lacks) or
    lies outside the years the calendar covers."""


@dataclass(frozen=True, order=True)
class LunarDate:
    """A day of the Vietnamese lunar calendar; `leap` marks the intercalary (nhuận) month."""

    year: int
    month: int
    day: int
    leap: bool = False


def _check_year(day: dt.date) -> None:
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise LunarError(f"{day.isoformat()} is outside {FIRST_YEAR}..{LAST_YEAR}")


def to_lunar(day: dt.date) -> LunarDate:
    """The Vietnamese lunar date of a Gregorian day."""
    _check_year(day)
    got = lunar_vn.solar_to_lunar(day, time_zone=VIETNAM_UTC_OFFSET_HOURS)
    return LunarDate(got.year, got.month, got.day, bool(got.leap))


def to_solar(date: LunarDate) -> dt.date:
    """The Gregorian day of a lunar date; LunarError when that date does not exist."""
    try:
        got = lunar_vn.lunar_to_solar(lunar_vn.LunarDate(date.day, date.month, date.year,
                                                         date.leap),
                                      time_zone=VIETNAM_UTC_OFFSET_HOURS)
    except ValueError as err:
        raise LunarError(f"{date} does not exist: {err}") from err
    # the library rolls a 30th of a 29-day month over to the next month's 1st: refuse it
    if to_lunar(got) != date:
        raise LunarError(f"{date} does not exist")
    return got


def leap_month(year: int) -> int | None:
    """The month number that repeats (tháng nhuận) in a lunar year, or None."""
    for month in range(1, 13):
        try:
            to_solar(LunarDate(year, month, 1, True))
        except LunarError:
            continue
        return month
    return None


def month_length(year: int, month: int, leap: bool = False) -> int:
    """29 (tháng thiếu) or 30 (tháng đủ) days."""
    first = to_solar(LunarDate(year, month, 1, leap))
    return 30 if to_lunar(first + dt.timedelta(days=29)).day == 30 else 29


def _days(date_from: dt.date, date_to: dt.date) -> Iterator[tuple[dt.date, LunarDate]]:
    day = date_from
    while day <= date_to:
        yield day, to_lunar(day)
        day += dt.timedelta(days=1)


def lunar_days(days: Collection[int], date_from: dt.date, date_to: dt.date, *,
               months: Collection[int] = (), include_leap_months: bool = True) -> list[dt.date]:
    """Gregorian days in [date_from, date_to] whose lunar day is in `days` (1..30).

    `months` limits to those lunar months (empty: all). A leap month counts as its number
    (the leap 4th month is a 4th month) unless `include_leap_months` is False. Day 30 comes
    only in 30-day months.
    """
    return [day for day, lunar in _days(date_from, date_to)
            if lunar.day in days and (not months or lunar.month in months)
            and (include_leap_months or not lunar.leap)]


@dataclass(frozen=True)
class LunarRule:
    """Lunar days at fixed local times: mùng 1 and rằm at 06:00 is the default.

    Its text form, `FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6;BYMINUTE=0`, can sit in a
    broadcast's `recurrence` beside RRULEs (BYMONTH limits the lunar months, LEAP=0 leaves leap
    months out, BYHOUR/BYMINUTE absent take the time of start_at).
    """

    days: tuple[int, ...] = (1, 15)
    hours: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    include_leap_months: bool = True

    @property
    def text(self) -> str:
        parts = [f"FREQ={LUNAR_FREQ}", "BYMONTHDAY=" + ",".join(map(str, self.days))]
        for name, values in (("BYMONTH", self.months), ("BYHOUR", self.hours),
                             ("BYMINUTE", self.minutes)):
            if values:
                parts.append(f"{name}=" + ",".join(map(str, values)))
        if not self.include_leap_months:
            parts.append("LEAP=0")
        return ";".join(parts)

    def times(self, start: dt.datetime) -> list[dt.time]:
        hours = self.hours or (start.hour,)
        minutes = self.minutes or (start.minute,)
        return sorted(dt.time(h, m) for h in hours for m in minutes)


_LUNAR_PARTS = {"FREQ", "BYMONTHDAY", "BYMONTH", "BYHOUR", "BYMINUTE", "LEAP"}
_RANGES = {"BYMONTHDAY": (1, 30), "BYMONTH": (1, 12), "BYHOUR": (0, 23), "BYMINUTE": (0, 59)}


def is_lunar_rule(text: str) -> bool:
    """True when a `recurrence` text is a lunar rule rather than an RRULE."""
    return re.search(rf"(^|;)\s*FREQ\s*=\s*{LUNAR_FREQ}\s*(;|$)", text.upper()) is not None


def _lunar_values(name: str, value: str) -> tuple[int, ...]:
    low, high = _RANGES[name]
    try:
        numbers = tuple(sorted({int(x) for x in value.split(",")}))
    except ValueError:
        raise RecurrenceError(RecurrenceErrorCode.INVALID_VALUE,
                              f"{name}={value} is not a list of numbers", name) from None
    if not all(low <= n <= high for n in numbers):
        raise RecurrenceError(RecurrenceErrorCode.INVALID_VALUE,
                              f"{name}={value} is outside {low}..{high}", name)
    return numbers


def parse_lunar_rule(text: str) -> LunarRule:
    """A LunarRule from its text form; RecurrenceError (same codes as RRULEs) when malformed."""
    parts: dict[str, str] = {}
    for piece in filter(None, (p.strip() for p in text.strip().split(";"))):
        name, sep, value = (x.strip().upper() for x in piece.partition("="))
        if not sep or not value or "=" in value:
            raise RecurrenceError(RecurrenceErrorCode.UNPARSABLE, f"{piece!r} is not NAME=VALUE")
        if name not in _LUNAR_PARTS:
            raise RecurrenceError(RecurrenceErrorCode.UNSUPPORTED_PART,
                                  f"{name} is not supported in a lunar rule", name)
        if name in parts:
            raise RecurrenceError(RecurrenceErrorCode.DUPLICATE_PART, f"{name} appears twice",
                                  name)
        parts[name] = value
    if parts.get("FREQ") != LUNAR_FREQ:
        raise RecurrenceError(RecurrenceErrorCode.MISSING_FREQ,
                              f"a lunar rule starts FREQ={LUNAR_FREQ}", "FREQ")
    if "BYMONTHDAY" not in parts:
        raise RecurrenceError(RecurrenceErrorCode.INVALID_VALUE,
                              "a lunar rule needs BYMONTHDAY (the lunar days)", "BYMONTHDAY")
    if parts.get("LEAP", "1") not in ("0", "1"):
        raise RecurrenceError(RecurrenceErrorCode.INVALID_VALUE, "LEAP is 0 or 1", "LEAP")
    values = {name: _lunar_values(name, parts[name]) for name in _RANGES if name in parts}
    return LunarRule(days=values["BYMONTHDAY"], hours=values.get("BYHOUR", ()),
                     minutes=values.get("BYMINUTE", ()), months=values.get("BYMONTH", ()),
                     include_leap_months=parts.get("LEAP", "1") == "1")


def expand_lunar(rule: LunarRule | str, start_at: dt.datetime, window_from: dt.datetime,
                 window_to: dt.datetime, *, tz: str | dt.tzinfo = DEFAULT_TZ,
                 exdates: Iterable[dt.datetime] = (), skip_days: Collection[dt.date] = (),
                 max_occurrences: int = MAX_OCCURRENCES) -> list[dt.datetime]:
    """The occurrences of a lunar rule from `start_at` on, in [window_from, window_to), in UTC.

    Same contract as recurrence.expand: local wall-clock times in `tz`, exdates matched by
    start, skip_days as whole local days, sorted aware UTC datetimes. The lunar day of a local
    date is Vietnam's (UTC+7) whatever `tz` is.
    """
    if isinstance(rule, str):
        rule = parse_lunar_rule(rule)
    for value, name in ((start_at, "start_at"), (window_from, "window_from"),
                        (window_to, "window_to")):
        require_aware(value, name)
    tzinfo = zone(tz)
    begin = max(start_at, window_from)
    if window_to <= begin:
        return []
    skipped = {require_aware(x, "exdate").astimezone(UTC).replace(microsecond=0)
               for x in exdates}
    times = rule.times(start_at.astimezone(tzinfo))
    days = lunar_days(rule.days, begin.astimezone(tzinfo).date(),
                      window_to.astimezone(tzinfo).date(), months=rule.months,
                      include_leap_months=rule.include_leap_months)
    found: list[dt.datetime] = []
    for day in days:
        if day in skip_days:
            continue
        for clock in times:
            instant = localize(dt.datetime.combine(day, clock), tzinfo)
            if begin <= instant < window_to and instant not in skipped and (
                    not found or instant > found[-1]):
                found.append(instant)
        if len(found) > max_occurrences:
            raise RecurrenceError(RecurrenceErrorCode.TOO_MANY,
                                  f"more than {max_occurrences} occurrences in the window")
    return found


class LunarHoliday(StrEnum):
    """Lunar holidays a ward plans around."""

    TET = "tet"                                  # Tết Nguyên Đán, 1/1 (and the days around it)
    RAM_THANG_GIENG = "ram_thang_gieng"          # Rằm tháng Giêng, 15/1
    GIO_TO_HUNG_VUONG = "gio_to_hung_vuong"      # Giỗ Tổ Hùng Vương, 10/3
    VU_LAN = "vu_lan"                            # Vu Lan, 15/7
    TRUNG_THU = "trung_thu"                      # Tết Trung Thu, 15/8
    ONG_CONG_ONG_TAO = "ong_cong_ong_tao"        # ông Công ông Táo, 23/12


# (lunar month, lunar day) of each holiday.
HOLIDAY_LUNAR_DATES: dict[LunarHoliday, tuple[int, int]] = {
    LunarHoliday.TET: (1, 1), LunarHoliday.RAM_THANG_GIENG: (1, 15),
    LunarHoliday.GIO_TO_HUNG_VUONG: (3, 10), LunarHoliday.VU_LAN: (7, 15),
    LunarHoliday.TRUNG_THU: (8, 15), LunarHoliday.ONG_CONG_ONG_TAO: (12, 23),
}
# Simple templates for the UI; the integrator moves them into the translation catalogue.
HOLIDAY_NAMES: dict[LunarHoliday, dict[str, str]] = {
    LunarHoliday.TET: {"vi": "Tết Nguyên Đán", "en": "Lunar New Year (Tết)"},
    LunarHoliday.RAM_THANG_GIENG: {"vi": "Rằm tháng Giêng", "en": "First full moon"},
    LunarHoliday.GIO_TO_HUNG_VUONG: {"vi": "Giỗ Tổ Hùng Vương",
                                     "en": "Hùng Kings' Commemoration"},
    LunarHoliday.VU_LAN: {"vi": "Lễ Vu Lan", "en": "Vu Lan (Ghost Festival)"},
    LunarHoliday.TRUNG_THU: {"vi": "Tết Trung Thu", "en": "Mid-Autumn Festival"},
    LunarHoliday.ONG_CONG_ONG_TAO: {"vi": "Ông Công ông Táo", "en": "Kitchen Gods' Day"},
}


@dataclass(frozen=True)
class TetSpan:
    """Which days around Tết count as Tết: `days_before` days of the old year (1 = the last
    day, 30 or 29 Tết as the month has it; 2 = from 29 Tết in a 30-day month) through mùng
    `last_day` (3 = mùng 1 to mùng 3)."""

    days_before: int = 1
    last_day: int = 3

    def __post_init__(self) -> None:
        if not 0 <= self.days_before <= 15 or not 1 <= self.last_day <= 15:
            raise LunarError("a Tết span is 0..15 days before and mùng 1..15")


@dataclass(frozen=True, order=True)
class HolidayDate:
    """One Gregorian day that is (part of) a lunar holiday."""

    date: dt.date
    holiday: LunarHoliday = field(compare=False)
    lunar: LunarDate = field(compare=False)


def _holiday_days(holiday: LunarHoliday, lunar_year: int, tet: TetSpan) -> list[dt.date]:
    month, day = HOLIDAY_LUNAR_DATES[holiday]
    first = to_solar(LunarDate(lunar_year, month, day))
    if holiday is not LunarHoliday.TET:
        return [first]
    return [first + dt.timedelta(days=n) for n in range(-tet.days_before, tet.last_day)]


def holiday_dates(year_from: int, year_to: int,
                  holidays: Iterable[LunarHoliday] = tuple(LunarHoliday), *,
                  tet: TetSpan | None = None) -> list[HolidayDate]:
    """Every day of the chosen lunar holidays in the Gregorian years year_from..year_to,
    sorted by date. Ông Công ông Táo (23/12) of one lunar year falls in the next Gregorian
    January or February and is listed there."""
    span = tet or TetSpan()
    first_year, last_year = max(year_from, FIRST_YEAR), min(year_to, LAST_YEAR)
    if (first_year, last_year) != (year_from, year_to):
        raise LunarError(f"years {year_from}..{year_to} are outside {FIRST_YEAR}..{LAST_YEAR}")
    found: list[HolidayDate] = []
    chosen = tuple(dict.fromkeys(holidays))
    for lunar_year in range(year_from - 1, year_to + 1):
        for holiday in chosen:
            try:
                days = _holiday_days(holiday, lunar_year, span)
            except LunarError:  # the edge years of the calendar: outside the range anyway
                continue
            for day in days:
                if year_from <= day.year <= year_to:
                    found.append(HolidayDate(day, holiday, to_lunar(day)))
    return sorted(found)


def holiday_skip_days(year_from: int, year_to: int,
                      holidays: Iterable[LunarHoliday] = tuple(LunarHoliday), *,
                      tet: TetSpan | None = None) -> frozenset[dt.date]:
    """The days of holiday_dates as a set, ready for expand(..., skip_days=…)."""
    return frozenset(h.date for h in holiday_dates(year_from, year_to, holidays, tet=tet))
