"""Vietnam's lunar calendar (schedules/lunar.py) against known dates, lunar rules and holidays."""
from __future__ import annotations

import datetime as dt

import pytest

from schedules.lunar import (HOLIDAY_NAMES, HolidayDate, LunarDate, LunarError, LunarHoliday,
                             LunarRule, TetSpan, expand_lunar, holiday_dates, holiday_skip_days,
                             is_lunar_rule, leap_month, lunar_days, month_length,
                             parse_lunar_rule, to_lunar, to_solar)
from schedules.recurrence import RecurrenceError, RecurrenceErrorCode, expand
from tests.schedules.times import VN, vn

D = dt.date


# Tết (lunar 1/1) in Vietnam. 1968, 1985, 2007 and 2030 differ from the Chinese calendar
# (1968-01-30, 1985-02-20, 2007-02-18, 2030-02-03): the new moon falls between 23:00 and
# midnight of UTC+7, or the leap month is placed differently.
TET = {1968: D(1968, 1, 29), 1985: D(1985, 1, 21), 2000: D(2000, 2, 5), 2007: D(2007, 2, 17),
       2019: D(2019, 2, 5), 2020: D(2020, 1, 25), 2021: D(2021, 2, 12), 2022: D(2022, 2, 1),
       2023: D(2023, 1, 22), 2024: D(2024, 2, 10), 2025: D(2025, 1, 29), 2026: D(2026, 2, 17),
       2030: D(2030, 2, 2)}


@pytest.mark.parametrize("year", sorted(TET))
def test_tet_falls_on_the_vietnamese_date(year):
    assert to_solar(LunarDate(year, 1, 1)) == TET[year]
    assert to_lunar(TET[year]) == LunarDate(year, 1, 1)
    assert to_lunar(TET[year] - dt.timedelta(days=1)).month == 12


def test_leap_months():
    assert leap_month(2020) == 4
    assert to_solar(LunarDate(2020, 4, 1)) == D(2020, 4, 23)
    assert to_solar(LunarDate(2020, 4, 1, leap=True)) == D(2020, 5, 23)
    assert to_solar(LunarDate(2020, 5, 1)) == D(2020, 6, 21)
    assert leap_month(2023) == 2
    assert to_solar(LunarDate(2023, 2, 1, leap=True)) == D(2023, 3, 22)
    assert to_lunar(D(2023, 3, 22)) == LunarDate(2023, 2, 1, leap=True)
    assert leap_month(2025) == 6
    assert to_solar(LunarDate(2025, 6, 1, leap=True)) == D(2025, 7, 25)
    assert leap_month(2024) is None and leap_month(2026) is None


def test_dates_that_do_not_exist_are_refused():
    with pytest.raises(LunarError):
        to_solar(LunarDate(2024, 4, 1, leap=True))  # 2024 has no leap month
    assert month_length(2023, 12) == 30       # 30 Tết before Tết 2024
    assert month_length(2024, 12) == 29       # no 30 Tết before Tết 2025
    with pytest.raises(LunarError):
        to_solar(LunarDate(2024, 12, 30))
    with pytest.raises(LunarError):
        to_lunar(D(2101, 1, 1))


def test_known_holidays_2024():
    got = {(h.holiday, h.date) for h in holiday_dates(2024, 2024)}
    assert (LunarHoliday.RAM_THANG_GIENG, D(2024, 2, 24)) in got
    assert (LunarHoliday.GIO_TO_HUNG_VUONG, D(2024, 4, 18)) in got
    assert (LunarHoliday.VU_LAN, D(2024, 8, 18)) in got
    assert (LunarHoliday.TRUNG_THU, D(2024, 9, 17)) in got
    # 23 tháng Chạp of Quý Mão is in February 2024; that of Giáp Thìn is in January 2025
    assert (LunarHoliday.ONG_CONG_ONG_TAO, D(2024, 2, 2)) in got
    assert D(2025, 1, 22) in {h.date for h in holiday_dates(2025, 2025)}
    assert D(2025, 1, 22) not in {h.date for h in holiday_dates(2024, 2024)}


def test_tet_span_is_chosen_by_the_user():
    default = [h.date for h in holiday_dates(2024, 2024, [LunarHoliday.TET])]
    assert default == [D(2024, 2, 9), D(2024, 2, 10), D(2024, 2, 11), D(2024, 2, 12)]
    # 29 Tết to mùng 5 in a year whose 12th month has 30 days: two days before
    wide = holiday_dates(2024, 2024, [LunarHoliday.TET], tet=TetSpan(days_before=2, last_day=5))
    assert wide[0] == HolidayDate(D(2024, 2, 8), LunarHoliday.TET, LunarDate(2023, 12, 29))
    assert wide[-1].lunar == LunarDate(2024, 1, 5) and len(wide) == 7
    # Tết 2025 had no 30 Tết: the one day before is 29 tháng Chạp
    eve = holiday_dates(2025, 2025, [LunarHoliday.TET], tet=TetSpan(days_before=1, last_day=1))
    assert [h.lunar for h in eve] == [LunarDate(2024, 12, 29), LunarDate(2025, 1, 1)]
    with pytest.raises(LunarError):
        TetSpan(days_before=-1)


def test_holiday_dates_over_a_year_range_and_the_calendar_edges():
    days = holiday_skip_days(2025, 2027, [LunarHoliday.TRUNG_THU])
    assert days == frozenset({D(2025, 10, 6), D(2026, 9, 25), D(2027, 9, 15)})
    assert holiday_dates(2100, 2100, [LunarHoliday.ONG_CONG_ONG_TAO])
    with pytest.raises(LunarError):
        holiday_dates(2099, 2101)
    assert set(HOLIDAY_NAMES) == set(LunarHoliday)


def test_mung_mot_and_ram_with_and_without_leap_months():
    with_leap = lunar_days((1, 15), D(2020, 4, 1), D(2020, 6, 30))
    # months begin 24/3, 23/4, 23/5 (the leap 4th) and 21/6
    assert with_leap == [D(2020, 4, 7), D(2020, 4, 23), D(2020, 5, 7), D(2020, 5, 23),
                         D(2020, 6, 6), D(2020, 6, 21)]
    without = lunar_days((1, 15), D(2020, 4, 1), D(2020, 6, 30), include_leap_months=False)
    assert without == [D(2020, 4, 7), D(2020, 4, 23), D(2020, 5, 7), D(2020, 6, 21)]


def test_day_thirty_only_in_long_months_and_months_filter():
    thirty = lunar_days((30,), D(2023, 12, 1), D(2025, 2, 28), months=(12,))
    assert thirty == [D(2024, 2, 9)]  # 30 Tết 2024; the 12th month before Tết 2025 had 29 days


def test_expand_lunar_rule_at_local_times():
    start = vn(2026, 1, 1, 6, 0)
    got = expand_lunar("FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6,17;BYMINUTE=0", start,
                       start, vn(2026, 2, 1))
    local = [g.astimezone(VN).strftime("%Y-%m-%d %H:%M") for g in got]
    # 2026-01-03 is rằm of the 11th month, 2026-01-19 mùng 1 of the 12th
    assert local == ["2026-01-03 06:00", "2026-01-03 17:00", "2026-01-19 06:00",
                     "2026-01-19 17:00"]
    assert all(g.tzinfo is dt.UTC for g in got)


def test_expand_lunar_takes_the_time_of_start_and_honours_skips():
    start = vn(2026, 1, 1, 7, 30)
    skip = [vn(2026, 1, 3, 7, 30)]
    got = expand_lunar(LunarRule(), start, start, vn(2026, 3, 10), exdates=skip,
                       skip_days=holiday_skip_days(2026, 2026, [LunarHoliday.TET]))
    days = [g.astimezone(VN).date() for g in got]
    # Tết 2026-02-17 (mùng 1) is skipped as a holiday; rằm of the 11th month as an exdate
    assert days == [D(2026, 1, 19), D(2026, 2, 2), D(2026, 3, 3)]
    assert {g.astimezone(VN).strftime("%H:%M") for g in got} == {"07:30"}


def test_expand_lunar_starts_no_earlier_than_its_anchor():
    got = expand_lunar(LunarRule(days=(1,)), vn(2026, 1, 20, 6, 0), vn(2026, 1, 1),
                       vn(2026, 3, 1))
    assert [g.astimezone(VN).date() for g in got] == [D(2026, 2, 17)]


def test_lunar_rule_text_round_trip_and_errors():
    rule = LunarRule(days=(1, 15), hours=(6,), minutes=(0,), months=(1, 7),
                     include_leap_months=False)
    assert parse_lunar_rule(rule.text) == rule
    assert is_lunar_rule(rule.text) and not is_lunar_rule("FREQ=DAILY")
    for text, code in [("FREQ=LUNARMONTHLY", RecurrenceErrorCode.INVALID_VALUE),
                       ("FREQ=LUNARMONTHLY;BYMONTHDAY=31", RecurrenceErrorCode.INVALID_VALUE),
                       ("FREQ=LUNARMONTHLY;BYMONTHDAY=1;COUNT=3",
                        RecurrenceErrorCode.UNSUPPORTED_PART),
                       ("FREQ=LUNARMONTHLY;BYMONTHDAY=1;LEAP=2", RecurrenceErrorCode.INVALID_VALUE),
                       ("BYMONTHDAY=1", RecurrenceErrorCode.MISSING_FREQ),
                       ("FREQ=LUNARMONTHLY;BYMONTHDAY", RecurrenceErrorCode.UNPARSABLE)]:
        with pytest.raises(RecurrenceError) as raised:
            parse_lunar_rule(text)
        assert raised.value.code == code, text


def test_holidays_as_skip_days_for_a_daily_rrule():
    start = vn(2026, 2, 15, 6, 0)
    skip = holiday_skip_days(2026, 2026, [LunarHoliday.TET], tet=TetSpan(1, 3))
    got = expand("FREQ=DAILY", start, start, vn(2026, 2, 22), skip_days=skip)
    assert [g.astimezone(VN).day for g in got] == [15, 20, 21]
