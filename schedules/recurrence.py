"""Recurring broadcasts: RFC 5545 RRULE strings checked, expanded and described.

Pure functions, no I/O: python-dateutil's rrule does the expansion, in the wall clock of the
area's IANA time zone, and this module only checks the rule first and localises the result.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rrulestr

DEFAULT_TZ = "Asia/Ho_Chi_Minh"
# Beyond this many occurrences in one window the caller asked for something absurd.
MAX_OCCURRENCES = 5000
MAX_INTERVAL = 1000
UTC = dt.UTC


class RecurrenceErrorCode(StrEnum):
    """Why a rule was refused; the API turns each into a translated 400 message."""

    EMPTY = "empty"                        # no rule text at all
    UNPARSABLE = "unparsable"              # not NAME=VALUE;NAME=VALUE…
    UNSUPPORTED_PART = "unsupported_part"  # RDATE, EXRULE, DTSTART, BYEASTER, X-…
    DUPLICATE_PART = "duplicate_part"      # the same part twice
    MISSING_FREQ = "missing_freq"
    INVALID_VALUE = "invalid_value"        # a part whose value is out of range or malformed
    TOO_FREQUENT = "too_frequent"          # more than one occurrence a minute
    COUNT_AND_UNTIL = "count_and_until"    # RFC 5545 forbids both
    NEVER_OCCURS = "never_occurs"          # a rule that can produce no occurrence at all
    TOO_MANY = "too_many"                  # more occurrences in one window than allowed
    BAD_TIMEZONE = "bad_timezone"
    NAIVE_DATETIME = "naive_datetime"      # times must carry their offset


class RecurrenceError(ValueError):
    """A rule or an expansion request that cannot be accepted, with a machine code.

    `code` is a RecurrenceErrorCode, `part` the rule part at fault (e.g. "BYHOUR") when there is
    one, and `detail` an English sentence for logs; the user reads the catalogue's text for `code`.
    """

    def __init__(self, code: RecurrenceErrorCode, detail: str, part: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.part = part


class Freq(StrEnum):
    """The frequencies (RFC 5545 FREQ) a rule may have here; MINUTELY and SECONDLY are refused
    as too frequent, a lunar rule's FREQ=LUNARMONTHLY is schedules/lunar.py's."""
    YEARLY = "YEARLY"
    MONTHLY = "MONTHLY"
    WEEKLY = "WEEKLY"
    DAILY = "DAILY"
    HOURLY = "HOURLY"


_TOO_FREQUENT_FREQS = ("MINUTELY", "SECONDLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # BYDAY and WKST, Monday first
# (low, high, zero and negatives allowed) for each integer list part, as RFC 5545 §3.3.10.
_INT_LISTS: dict[str, tuple[int, int, bool]] = {
    "BYSECOND": (0, 59, False), "BYMINUTE": (0, 59, False), "BYHOUR": (0, 23, False),
    "BYMONTHDAY": (1, 31, True), "BYYEARDAY": (1, 366, True), "BYWEEKNO": (1, 53, True),
    "BYMONTH": (1, 12, False), "BYSETPOS": (1, 366, True),
}
_SUPPORTED = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "WKST", *_INT_LISTS})
# Properties that belong beside an RRULE in iCalendar, not inside `recurrence`.
_OTHER_PROPERTIES = ("RDATE", "EXRULE", "EXDATE", "DTSTART", "DTEND", "DURATION")
_BYDAY_RE = re.compile(r"^([+-]?)(\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
_UNTIL_FORMATS = (("%Y%m%dT%H%M%SZ", "utc"), ("%Y%m%dT%H%M%S", "local"), ("%Y%m%d", "date"))


@dataclass(frozen=True)
class Recurrence:
    """A checked rule. `text` is the normalised RRULE (upper case, parts in the given order)."""

    text: str
    parts: tuple[tuple[str, str], ...]
    # UNTIL as an instant (…Z) or as a local wall-clock limit (a DATE means the whole day).
    until_utc: dt.datetime | None = None
    until_local: dt.datetime | None = None

    @property
    def freq(self) -> Freq:
        return Freq(self.part("FREQ") or "")  # parse_rule admits no rule without one

    def part(self, name: str) -> str | None:
        return dict(self.parts).get(name)

    def ints(self, name: str) -> list[int]:
        value = self.part(name)
        return [int(x) for x in value.split(",")] if value else []


def _fail(code: RecurrenceErrorCode, detail: str, part: str | None = None) -> RecurrenceError:
    return RecurrenceError(code, detail, part)


def _body(text: str) -> str:
    """The NAME=VALUE;… text, once an optional RRULE: prefix is gone; other properties refused."""
    body = text.strip()
    if not body:
        raise _fail(RecurrenceErrorCode.EMPTY, "the rule is empty")
    if "\n" in body or "\r" in body:
        raise _fail(RecurrenceErrorCode.UNSUPPORTED_PART,
                    "one RRULE only; exceptions go in `exdates`")
    if body.upper().startswith("RRULE:"):
        body = body[len("RRULE:"):]
    if ":" in body:
        name = body.split(":", 1)[0].strip().upper()
        if name in _OTHER_PROPERTIES:
            raise _fail(RecurrenceErrorCode.UNSUPPORTED_PART,
                        f"{name} is not accepted in a rule", name)
        raise _fail(RecurrenceErrorCode.UNPARSABLE, f"unexpected ':' in {body!r}")
    return body


def _split(text: str) -> list[tuple[str, str]]:
    body = _body(text)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for piece in body.split(";"):
        if not piece.strip():
            continue
        if piece.count("=") != 1:
            raise _fail(RecurrenceErrorCode.UNPARSABLE, f"{piece!r} is not NAME=VALUE")
        name, value = (x.strip().upper() for x in piece.split("="))
        if not name or not value:
            raise _fail(RecurrenceErrorCode.UNPARSABLE, f"{piece!r} is not NAME=VALUE")
        if name in _OTHER_PROPERTIES or name.startswith("X-") or name not in _SUPPORTED:
            raise _fail(RecurrenceErrorCode.UNSUPPORTED_PART, f"{name} is not supported", name)
        if name in seen:
            raise _fail(RecurrenceErrorCode.DUPLICATE_PART, f"{name} appears twice", name)
        seen.add(name)
        pairs.append((name, value))
    if not pairs:
        raise _fail(RecurrenceErrorCode.EMPTY, "the rule is empty")
    return pairs


def _int(name: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[+-]?\d{1,9}", value):
        raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"{name}={value} is not a number", name)
    number = int(value)
    if not low <= number <= high:
        raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                    f"{name}={value} is outside {low}..{high}", name)
    return number


def _int_list(name: str, value: str) -> list[int]:
    low, high, signed = _INT_LISTS[name]
    numbers = []
    for item in value.split(","):
        number = _int(name, item, -high if signed else low, high)
        if signed and number == 0:
            raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"{name} may not contain 0", name)
        numbers.append(number)
    return numbers


def _check_byday(value: str, freq: str) -> None:
    for item in value.split(","):
        match = _BYDAY_RE.match(item)
        if not match:
            raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"BYDAY={value} is malformed", "BYDAY")
        if match.group(2) is not None:
            if freq not in (Freq.MONTHLY, Freq.YEARLY):
                raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                            "a numbered BYDAY (e.g. 1MO) needs FREQ=MONTHLY or YEARLY", "BYDAY")
            if not 1 <= int(match.group(2)) <= 53:
                raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                            f"BYDAY={value}: the number must be 1..53", "BYDAY")
        elif match.group(1):
            raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"BYDAY={value} is malformed", "BYDAY")


def _parse_until(value: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    for fmt, kind in _UNTIL_FORMATS:
        try:
            parsed = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        if kind == "utc":
            return parsed.replace(tzinfo=UTC), None
        if kind == "date":  # a DATE: the whole of that local day is included
            return None, parsed.replace(hour=23, minute=59, second=59)
        return None, parsed
    raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                f"UNTIL={value} is not YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ", "UNTIL")


def _never_by_month_day(months: list[int], days: list[int]) -> bool:
    """True when no BYMONTH month has any BYMONTHDAY (e.g. 30 February, 31 April)."""
    if not months or not days:
        return False
    for month in months:
        length = 29 if month == 2 else calendar.monthrange(2001, month)[1]
        if any(1 <= day <= length or -length <= day <= -1 for day in days):
            return False
    return True


def _check_combinations(parts: Mapping[str, str], freq: str) -> None:
    if "BYWEEKNO" in parts and freq != Freq.YEARLY:
        raise _fail(RecurrenceErrorCode.INVALID_VALUE, "BYWEEKNO needs FREQ=YEARLY", "BYWEEKNO")
    if "BYYEARDAY" in parts and freq in (Freq.DAILY, Freq.WEEKLY, Freq.MONTHLY):
        raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                    f"BYYEARDAY does not go with FREQ={freq}", "BYYEARDAY")
    if "BYMONTHDAY" in parts and freq == Freq.WEEKLY:
        raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                    "BYMONTHDAY does not go with FREQ=WEEKLY", "BYMONTHDAY")
    if "BYSETPOS" in parts and not any(n.startswith("BY") and n != "BYSETPOS" for n in parts):
        raise _fail(RecurrenceErrorCode.INVALID_VALUE,
                    "BYSETPOS needs another BY… part to select from", "BYSETPOS")
    if "COUNT" in parts and "UNTIL" in parts:
        raise _fail(RecurrenceErrorCode.COUNT_AND_UNTIL, "COUNT and UNTIL may not both be given")
    # More than one second listed fires several times within one minute.
    if len(parts.get("BYSECOND", "0").split(",")) > 1:
        raise _fail(RecurrenceErrorCode.TOO_FREQUENT,
                    "more than one BYSECOND fires more than once a minute", "BYSECOND")
    months = [int(x) for x in parts["BYMONTH"].split(",")] if "BYMONTH" in parts else []
    days = [int(x) for x in parts["BYMONTHDAY"].split(",")] if "BYMONTHDAY" in parts else []
    if _never_by_month_day(months, days):
        raise _fail(RecurrenceErrorCode.NEVER_OCCURS,
                    "no BYMONTH month has any of the BYMONTHDAY days", "BYMONTHDAY")


def parse_rule(text: str) -> Recurrence:
    """Check an RRULE string (an optional "RRULE:" prefix is allowed) and normalise it.

    Raises RecurrenceError naming the problem: an unparsable text, a part this system does not
    take (RDATE, EXRULE, DTSTART, X-…, BYEASTER), a duplicate, FREQ missing, a value out of its
    RFC 5545 range, COUNT with UNTIL, a rule firing more than once a minute (SECONDLY, MINUTELY,
    several BYSECOND) or one that can never occur (30 February). A rule with neither COUNT nor
    UNTIL is accepted: every expansion is bounded by its window.
    """
    pairs = _split(text)
    parts = dict(pairs)
    freq = parts.get("FREQ")
    if freq is None:
        raise _fail(RecurrenceErrorCode.MISSING_FREQ, "FREQ is required", "FREQ")
    if freq in _TOO_FREQUENT_FREQS:
        raise _fail(RecurrenceErrorCode.TOO_FREQUENT,
                    f"FREQ={freq} fires more than once a minute", "FREQ")
    if freq not in tuple(Freq):
        raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"FREQ={freq} is unknown", "FREQ")
    until_utc = until_local = None
    for name, value in pairs:
        if name in _INT_LISTS:
            _int_list(name, value)
        elif name == "INTERVAL":
            _int(name, value, 1, MAX_INTERVAL)
        elif name == "COUNT":
            _int(name, value, 1, 10**9)
        elif name == "BYDAY":
            _check_byday(value, freq)
        elif name == "WKST" and value not in WEEKDAYS:
            raise _fail(RecurrenceErrorCode.INVALID_VALUE, f"WKST={value} is not a weekday", name)
        elif name == "UNTIL":
            until_utc, until_local = _parse_until(value)
    _check_combinations(parts, freq)
    normalised = ";".join(f"{name}={value}" for name, value in pairs)
    return Recurrence(text=normalised, parts=tuple(pairs), until_utc=until_utc,
                      until_local=until_local)


def zone(tz: str | dt.tzinfo) -> dt.tzinfo:
    """The tzinfo for an IANA name (or a tzinfo passed through); RecurrenceError if unknown."""
    if isinstance(tz, dt.tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise _fail(RecurrenceErrorCode.BAD_TIMEZONE, f"unknown time zone {tz!r}") from err


def require_aware(value: dt.datetime, name: str) -> dt.datetime:
    """`value` unchanged if it carries an offset; RecurrenceError if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(RecurrenceErrorCode.NAIVE_DATETIME, f"{name} has no time zone")
    return value


def localize(wall: dt.datetime, tzinfo: dt.tzinfo) -> dt.datetime:
    """A local wall-clock time as an aware UTC instant, as RFC 5545 §3.3.5 reads it.

    A time that falls in a daylight-saving gap is read with the offset before the gap (02:30 on
    a spring-forward night becomes 03:30 local); an ambiguous one takes its first occurrence.
    zoneinfo's fold=0 does exactly that.
    """
    return wall.replace(tzinfo=tzinfo, fold=0).astimezone(UTC)


def _wall(instant: dt.datetime, tzinfo: dt.tzinfo) -> dt.datetime:
    return instant.astimezone(tzinfo).replace(tzinfo=None)


def _add_months(day: dt.date, months: int) -> dt.date:
    years, month = divmod(day.month - 1 + months, 12)
    return dt.date(day.year + years, month + 1, 1)


def _period_start(freq: Freq, wall_start: dt.datetime, periods: int, wkst: int) -> dt.datetime:
    """The start of the period `periods` whole periods after the one holding `wall_start`."""
    day = wall_start.date()
    if freq == Freq.HOURLY:
        return wall_start.replace(minute=0, second=0) + dt.timedelta(hours=periods)
    if freq == Freq.DAILY:
        day += dt.timedelta(days=periods)
    elif freq == Freq.WEEKLY:
        day += dt.timedelta(days=7 * periods - (day.weekday() - wkst) % 7)
    elif freq == Freq.MONTHLY:
        day = _add_months(day, periods)
    else:
        day = dt.date(day.year + periods, 1, 1)
    return dt.datetime.combine(day, dt.time())


# The longest each period can be, so that the count of whole periods is never overestimated.
_PERIOD = {Freq.HOURLY: dt.timedelta(hours=1), Freq.DAILY: dt.timedelta(days=1),
           Freq.WEEKLY: dt.timedelta(days=7), Freq.MONTHLY: dt.timedelta(days=31),
           Freq.YEARLY: dt.timedelta(days=366)}


def _fast_forward(rec: Recurrence, wall_start: dt.datetime,
                  wall_from: dt.datetime) -> tuple[list[tuple[str, str]], dt.datetime]:
    """The same rule re-anchored at a period start shortly before `wall_from`.

    dateutil always iterates from its anchor, so an hourly rule anchored years ago costs a
    second per window. Without COUNT the occurrences after the anchor's period depend only on
    the period grid and on the fields the rule takes from its anchor; moving the anchor by
    whole INTERVALs of periods, with those fields written out as dateutil would default them,
    gives the same occurrences from the new anchor on (a property test checks it).
    """
    parts = [(n, v) for n, v in rec.parts if n != "UNTIL"]
    interval = int(rec.part("INTERVAL") or 1)
    periods = (wall_from - wall_start) // (_PERIOD[rec.freq] * interval) - 2
    if rec.part("COUNT") or periods < 1:
        return parts, wall_start
    explicit = dict(parts)
    defaults = {"BYMINUTE": str(wall_start.minute), "BYSECOND": str(wall_start.second)}
    if rec.freq != Freq.HOURLY:
        defaults["BYHOUR"] = str(wall_start.hour)
    if not any(n in explicit for n in ("BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY")):
        if rec.freq == Freq.WEEKLY:
            defaults["BYDAY"] = WEEKDAYS[wall_start.weekday()]
        elif rec.freq in (Freq.MONTHLY, Freq.YEARLY):
            defaults["BYMONTHDAY"] = str(wall_start.day)
        if rec.freq == Freq.YEARLY:
            defaults["BYMONTH"] = str(wall_start.month)
    parts += [(n, v) for n, v in defaults.items() if n not in explicit]
    wkst = WEEKDAYS.index(rec.part("WKST") or "MO")
    return parts, _period_start(rec.freq, wall_start, periods * interval, wkst)


def _rrule(rec: Recurrence, wall_start: dt.datetime, until_wall: dt.datetime | None,
           wall_from: dt.datetime | None = None) -> rrule:
    parts, wall_start = (_fast_forward(rec, wall_start, wall_from) if wall_from is not None
                         else ([(n, v) for n, v in rec.parts if n != "UNTIL"], wall_start))
    text = ";".join(f"{n}={v}" for n, v in parts)
    try:
        built = rrulestr(text, dtstart=wall_start)
    except ValueError as err:  # dateutil finds sets no start can reach (HOURLY;INTERVAL=4;BYHOUR=6)
        if "empty" in str(err):
            raise _fail(RecurrenceErrorCode.NEVER_OCCURS, f"{rec.text} never occurs") from err
        raise _fail(RecurrenceErrorCode.UNPARSABLE, f"{rec.text}: {err}") from err
    assert isinstance(built, rrule)
    return built.replace(until=until_wall) if until_wall is not None else built


def _as_recurrence(rule: str | Recurrence) -> Recurrence:
    return rule if isinstance(rule, Recurrence) else parse_rule(rule)


def _until_wall(rec: Recurrence, tzinfo: dt.tzinfo) -> dt.datetime | None:
    """UNTIL as a wall-clock bound for dateutil, a day wide so that DST never cuts it short."""
    if rec.until_local is not None:
        return rec.until_local
    if rec.until_utc is not None:
        return _wall(rec.until_utc, tzinfo) + dt.timedelta(days=1)
    return None


def _within_until(rec: Recurrence, wall: dt.datetime, instant: dt.datetime) -> bool:
    if rec.until_utc is not None:
        return instant <= rec.until_utc
    if rec.until_local is not None:
        return wall <= rec.until_local
    return True


def _utc_key(value: dt.datetime) -> dt.datetime:
    return require_aware(value, "exdate").astimezone(UTC).replace(microsecond=0)


def _occurrences(rec: Recurrence, start_at: dt.datetime, tzinfo: dt.tzinfo,
                 wall_from: dt.datetime, fast_forward: bool = True,
                 ) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """(wall clock, UTC instant) of every occurrence from `wall_from` on, within UNTIL."""
    built = _rrule(rec, _wall(start_at, tzinfo), _until_wall(rec, tzinfo),
                   wall_from if fast_forward else None)
    for wall in built.xafter(wall_from, inc=True):
        instant = localize(wall, tzinfo)
        if not _within_until(rec, wall, instant):
            return  # fold=0 keeps instants in wall-clock order: none later can be within
        yield wall, instant


def expand(rule: str | Recurrence, start_at: dt.datetime, window_from: dt.datetime,
           window_to: dt.datetime, *, tz: str | dt.tzinfo = DEFAULT_TZ,
           exdates: Iterable[dt.datetime] = (), skip_days: Collection[dt.date] = (),
           max_occurrences: int = MAX_OCCURRENCES) -> list[dt.datetime]:
    """The occurrences of `rule` anchored at `start_at` in [window_from, window_to), in UTC.

    The rule runs on the wall clock of `tz`: "BYHOUR=6" is 06:00 local on every day, across
    daylight-saving changes. `start_at` is the first possible occurrence and fills what the rule
    leaves open (the time of day, the weekday, the day of the month); it is itself an occurrence
    only if it fits the rule (dateutil's reading; RFC 5545 would always count it). `exdates` are
    occurrence starts to skip (any offset; matched to the second); `skip_days` are local calendar
    days to skip whole (lunar holidays, say). Returns sorted aware UTC datetimes, without
    duplicates. Raises RecurrenceError for a bad rule, a naive datetime, an unknown zone, or
    more than `max_occurrences` in the window.
    """
    rec = _as_recurrence(rule)
    for value, name in ((start_at, "start_at"), (window_from, "window_from"),
                        (window_to, "window_to")):
        require_aware(value, name)
    tzinfo = zone(tz)
    if window_to <= window_from:
        return []
    skipped = {_utc_key(x) for x in exdates}
    wall_to = _wall(window_to, tzinfo) + dt.timedelta(days=1)
    found: list[dt.datetime] = []
    wall_from = _wall(window_from, tzinfo) - dt.timedelta(days=1)
    for wall, instant in _occurrences(rec, start_at, tzinfo, wall_from):
        if wall > wall_to:
            break
        if not window_from <= instant < window_to or instant in skipped:
            continue
        if wall.date() in skip_days:
            continue
        if found and found[-1] >= instant:  # two wall times in one DST gap land on one instant
            continue
        found.append(instant)
        if len(found) > max_occurrences:
            raise _fail(RecurrenceErrorCode.TOO_MANY,
                        f"more than {max_occurrences} occurrences in the window")
    return found


def first_occurrence(rule: str | Recurrence, start_at: dt.datetime, *,
                     tz: str | dt.tzinfo = DEFAULT_TZ) -> dt.datetime | None:
    """The first occurrence at or after `start_at` (UTC), or None when COUNT/UNTIL left none."""
    rec = _as_recurrence(rule)
    tzinfo = zone(tz)
    require_aware(start_at, "start_at")
    for _wall_time, instant in _occurrences(rec, start_at, tzinfo, _wall(start_at, tzinfo)):
        if instant >= start_at.astimezone(UTC).replace(microsecond=0):
            return instant
    return None


def check_rule(text: str, start_at: dt.datetime, *,
               tz: str | dt.tzinfo = DEFAULT_TZ) -> Recurrence:
    """parse_rule, then make sure the rule anchored at `start_at` yields an occurrence.

    What the API calls before it stores a broadcast: a rule whose UNTIL lies before its start,
    or that no start can satisfy, is refused with NEVER_OCCURS rather than stored silent.
    """
    rec = parse_rule(text)
    if first_occurrence(rec, start_at, tz=tz) is None:
        raise _fail(RecurrenceErrorCode.NEVER_OCCURS,
                    f"{rec.text} has no occurrence from {start_at.isoformat()}")
    return rec
