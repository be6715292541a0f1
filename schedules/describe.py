"""A rule in words for the web UI: "Hằng ngày lúc 06:00 và 17:00", "Every week on Monday".

Pure functions over parsed rules. TEXTS holds simple templates per language; server/i18n.py takes
them into the one catalogue as ``rule.<part>`` and the web pages pass the catalogue's texts in
their place (server/web/schedule.py ``rule_words``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from .lunar import LunarRule, is_lunar_rule, parse_lunar_rule
from .recurrence import DEFAULT_TZ, WEEKDAYS, Freq, Recurrence, parse_rule, zone

TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "and": " và ", "sep": ", ",
        "DAILY": "hằng ngày", "DAILY_n": "{n} ngày một lần",
        "WEEKLY": "hằng tuần", "WEEKLY_n": "{n} tuần một lần",
        "MONTHLY": "hằng tháng", "MONTHLY_n": "{n} tháng một lần",
        "YEARLY": "hằng năm", "YEARLY_n": "{n} năm một lần",
        "HOURLY": "hằng giờ", "HOURLY_n": "{n} giờ một lần",
        "with_days": "{days} {freq}", "with_days_n": "{days}, {freq}",
        "at": "{what} lúc {times}", "at_minute": "{what}, vào phút {minutes}",
        "monthday": "ngày {day}", "monthday_last": "ngày cuối cùng",
        "monthday_from_end": "ngày thứ {n} tính từ cuối tháng",
        "yearday": "ngày {day}/{month}",
        "ord_1": "{weekday} đầu tiên", "ord_-1": "{weekday} cuối cùng",
        "ord_n": "{weekday} thứ {n}",
        "count": "{what}, {n} lần", "until": "{what}, đến {date}", "date": "{d:02d}/{m:02d}/{y}",
        "custom": "Theo quy tắc {rule}",
        "MO": "Thứ Hai", "TU": "Thứ Ba", "WE": "Thứ Tư", "TH": "Thứ Năm", "FR": "Thứ Sáu",
        "SA": "Thứ Bảy", "SU": "Chủ Nhật",
        "lunar": "{days} hằng tháng âm lịch", "lunar_months": "{days} tháng {months} âm lịch",
        "lunar_1": "mùng 1", "lunar_15": "rằm", "lunar_small": "mùng {day}",
        "lunar_day": "ngày {day}", "no_leap": "{what} (trừ tháng nhuận)",
    },
    "en": {
        "and": " and ", "sep": ", ",
        "DAILY": "every day", "DAILY_n": "every {n} days",
        "WEEKLY": "every week", "WEEKLY_n": "every {n} weeks",
        "MONTHLY": "every month", "MONTHLY_n": "every {n} months",
        "YEARLY": "every year", "YEARLY_n": "every {n} years",
        "HOURLY": "every hour", "HOURLY_n": "every {n} hours",
        "with_days": "{freq} on {days}", "with_days_n": "{freq} on {days}",
        "at": "{what} at {times}", "at_minute": "{what} at minute {minutes}",
        "monthday": "day {day}", "monthday_last": "the last day",
        "monthday_from_end": "day {n} from the end",
        "yearday": "{day}/{month}",
        "ord_1": "the first {weekday}", "ord_-1": "the last {weekday}",
        "ord_n": "the {weekday} number {n}",
        "count": "{what}, {n} times", "until": "{what}, until {date}",
        "date": "{y}-{m:02d}-{d:02d}",
        "custom": "By the rule {rule}",
        "MO": "Monday", "TU": "Tuesday", "WE": "Wednesday", "TH": "Thursday", "FR": "Friday",
        "SA": "Saturday", "SU": "Sunday",
        "lunar": "lunar {days} of every lunar month",
        "lunar_months": "lunar {days} of lunar month {months}",
        "lunar_1": "day 1", "lunar_15": "day 15 (full moon)", "lunar_small": "day {day}",
        "lunar_day": "day {day}", "no_leap": "{what} (leap months excluded)",
    },
}
# Parts the sentences below can say; any other makes the description fall back to the rule.
_SAYABLE = frozenset({"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH",
                      "BYHOUR", "BYMINUTE", "BYSECOND", "WKST"})


def _join(items: Sequence[str], t: Mapping[str, str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return t["sep"].join(items[:-1]) + t["and"] + items[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _times(rec: Recurrence, local_start: dt.datetime) -> list[str]:
    hours = rec.ints("BYHOUR") or [local_start.hour]
    minutes = rec.ints("BYMINUTE") or [local_start.minute]
    return [f"{h:02d}:{m:02d}" for h in sorted(hours) for m in sorted(minutes)]


def _weekday(item: str, t: Mapping[str, str]) -> str:
    name = t[item[-2:]]
    number = item[:-2]
    if not number:
        return name
    n = int(number)
    key = f"ord_{n}" if n in (1, -1) else "ord_n"
    return t[key].format(weekday=name, n=n)


def _monthday(day: int, t: Mapping[str, str]) -> str:
    if day == -1:
        return t["monthday_last"]
    if day < 0:
        return t["monthday_from_end"].format(n=-day)
    return t["monthday"].format(day=day)


def _days(rec: Recurrence, local_start: dt.datetime, t: Mapping[str, str]) -> str | None:
    """The days part of the sentence; what the rule leaves open comes from its start, as in
    the expansion; None for daily rules without a day filter."""
    months, monthdays = rec.ints("BYMONTH"), rec.ints("BYMONTHDAY")
    if not monthdays and not rec.part("BYDAY"):
        if rec.freq == Freq.YEARLY:
            months = months or [local_start.month]
            monthdays = [local_start.day]
        elif rec.freq == Freq.MONTHLY:
            monthdays = [local_start.day]
        elif rec.freq == Freq.WEEKLY:
            return t[WEEKDAYS[local_start.weekday()]]
    if rec.freq == Freq.YEARLY and months and monthdays and all(d > 0 for d in monthdays):
        return _join([t["yearday"].format(day=d, month=m) for m in months for d in monthdays], t)
    if monthdays:
        if len(monthdays) > 1 and all(d > 0 for d in monthdays):
            return t["monthday"].format(day=_join([str(d) for d in monthdays], t))
        return _join([_monthday(d, t) for d in monthdays], t)
    byday = rec.part("BYDAY")
    if byday:
        return _join([_weekday(item, t) for item in byday.split(",")], t)
    return None


def _limits(what: str, rec: Recurrence, zone_info: dt.tzinfo, t: Mapping[str, str]) -> str:
    if rec.part("COUNT"):
        return t["count"].format(what=what, n=int(rec.part("COUNT") or 0))
    until = rec.until_local or (rec.until_utc.astimezone(zone_info) if rec.until_utc else None)
    if until is not None:
        date = t["date"].format(d=until.day, m=until.month, y=until.year)
        return t["until"].format(what=what, date=date)
    return what


def _describe_rrule(rec: Recurrence, local_start: dt.datetime, zone_info: dt.tzinfo,
                    t: Mapping[str, str]) -> str:
    interval = int(rec.part("INTERVAL") or 1)
    if not set(dict(rec.parts)) <= _SAYABLE or (rec.freq == Freq.HOURLY and (
            rec.part("BYHOUR") or rec.part("BYDAY") or rec.part("BYMONTHDAY"))) or (
            rec.freq != Freq.YEARLY and rec.part("BYMONTH")):
        return t["custom"].format(rule=rec.text)
    freq = t[rec.freq] if interval == 1 else t[rec.freq + "_n"].format(n=interval)
    days = _days(rec, local_start, t)
    if days is None:
        what = freq
    else:
        what = t["with_days" if interval == 1 else "with_days_n"].format(days=days, freq=freq)
    if rec.freq == Freq.HOURLY:
        minutes = rec.ints("BYMINUTE") or [local_start.minute]
        what = t["at_minute"].format(what=what, minutes=_join([f"{m:02d}" for m in minutes], t))
    else:
        what = t["at"].format(what=what, times=_join(_times(rec, local_start), t))
    return _capital(_limits(what, rec, zone_info, t))


def _lunar_day(day: int, t: Mapping[str, str]) -> str:
    if day in (1, 15):
        return t[f"lunar_{day}"]
    return t["lunar_small" if day <= 10 else "lunar_day"].format(day=day)


def _describe_lunar(rule: LunarRule, local_start: dt.datetime, t: Mapping[str, str]) -> str:
    days = _join([_lunar_day(d, t) for d in rule.days], t)
    if rule.months:
        what = t["lunar_months"].format(days=days, months=_join([str(m) for m in rule.months], t))
    else:
        what = t["lunar"].format(days=days)
    times = [c.strftime("%H:%M") for c in rule.times(local_start)]
    what = t["at"].format(what=what, times=_join(times, t))
    if not rule.include_leap_months:
        what = t["no_leap"].format(what=what)
    return _capital(what)


def describe(text: str, start_at: dt.datetime, *, tz: str = DEFAULT_TZ, lang: str = "vi",
             texts: Mapping[str, Mapping[str, str]] = TEXTS) -> str:
    """A rule (RRULE or lunar rule) anchored at `start_at` in words, in `lang` ("vi" or "en").

    Times are local to `tz`. A rule with parts the sentences cannot say (BYSETPOS, BYWEEKNO, …)
    is described as "By the rule …". Raises RecurrenceError for a rule that does not parse.
    """
    t = texts[lang]
    zone_info = zone(tz)
    local_start = start_at.astimezone(zone_info)
    if is_lunar_rule(text):
        return _describe_lunar(parse_lunar_rule(text), local_start, t)
    return _describe_rrule(parse_rule(text), local_start, zone_info, t)
