"""Rules in words for the web UI (schedules/describe.py), Vietnamese and English."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from schedules.describe import TEXTS, describe
from schedules.recurrence import RecurrenceError

START = dt.datetime(2026, 3, 2, 6, 30, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))  # a Monday


@pytest.mark.parametrize(("rule", "vi", "en"), [
    ("FREQ=DAILY;BYHOUR=6,17;BYMINUTE=0", "Hằng ngày lúc 06:00 và 17:00",
     "Every day at 06:00 and 17:00"),
    ("FREQ=WEEKLY;BYDAY=MO;UNTIL=20261231", "Thứ Hai hằng tuần lúc 06:30, đến 31/12/2026",
     "Every week on Monday at 06:30, until 2026-12-31"),
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR", "Thứ Hai, Thứ Tư và Thứ Sáu hằng tuần lúc 06:30",
     "Every week on Monday, Wednesday and Friday at 06:30"),
    ("FREQ=WEEKLY;INTERVAL=2;COUNT=6", "Thứ Hai, 2 tuần một lần lúc 06:30, 6 lần",
     "Every 2 weeks on Monday at 06:30, 6 times"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,15", "Ngày 1 và 15 hằng tháng lúc 06:30",
     "Every month on day 1 and 15 at 06:30"),
    ("FREQ=MONTHLY", "Ngày 2 hằng tháng lúc 06:30", "Every month on day 2 at 06:30"),
    ("FREQ=MONTHLY;BYDAY=-1FR", "Thứ Sáu cuối cùng hằng tháng lúc 06:30",
     "Every month on the last Friday at 06:30"),
    ("FREQ=YEARLY;BYMONTHDAY=29;BYMONTH=2", "Ngày 29/2 hằng năm lúc 06:30",
     "Every year on 29/2 at 06:30"),
    ("FREQ=HOURLY;INTERVAL=2", "2 giờ một lần, vào phút 30", "Every 2 hours at minute 30"),
    # UNTIL in UTC is shown as the local date: 16:59:59Z is 23:59:59 in Vietnam
    ("FREQ=DAILY;UNTIL=20261231T165959Z", "Hằng ngày lúc 06:30, đến 31/12/2026",
     "Every day at 06:30, until 2026-12-31"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1", "Theo quy tắc FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1",
     "By the rule FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1"),
    ("FREQ=LUNARMONTHLY;BYMONTHDAY=1,15;BYHOUR=6;BYMINUTE=0",
     "Mùng 1 và rằm hằng tháng âm lịch lúc 06:00",
     "Lunar day 1 and day 15 (full moon) of every lunar month at 06:00"),
    ("FREQ=LUNARMONTHLY;BYMONTHDAY=15;BYMONTH=7;LEAP=0",
     "Rằm tháng 7 âm lịch lúc 06:30 (trừ tháng nhuận)",
     "Lunar day 15 (full moon) of lunar month 7 at 06:30 (leap months excluded)"),
])
def test_rules_in_words(rule, vi, en):
    assert describe(rule, START) == vi
    assert describe(rule, START, lang="en") == en


def test_both_languages_have_every_template():
    assert set(TEXTS["vi"]) == set(TEXTS["en"])


def test_a_bad_rule_is_not_described():
    with pytest.raises(RecurrenceError):
        describe("FREQ=SECONDLY", START)
