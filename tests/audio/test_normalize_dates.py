"""Dates, clock times and ranges."""
import re

import pytest

from audio.normalize import normalize, say_time


def said(text: str) -> str:
    """The words of ``text``, lower-case, punctuation, spacing and "mùng" ignored."""
    return " ".join(w for w in re.findall(r"\w+", text.lower()) if w != "mùng")


@pytest.mark.parametrize("text, spoken", [
    ("Ban hành ngày 24/11/2026",
     "ban hành ngày hai mươi tư tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 12/3/2025", "ngày mười hai tháng ba năm hai nghìn không trăm hai mươi lăm"),
    ("12/3/2025", "ngày mười hai tháng ba năm hai nghìn không trăm hai mươi lăm"),
    ("Hạn chót 01/01/2026", "hạn chót ngày một tháng một năm hai nghìn không trăm hai mươi sáu"),
    ("Ngày 05/12/2026, trạm tiêm",
     "ngày năm tháng mười hai năm hai nghìn không trăm hai mươi sáu, trạm tiêm"),
    ("ký ngày 29/12/2018",
     "ký ngày hai mươi chín tháng mười hai năm hai nghìn không trăm mười tám"),
    ("sáng 1/4/2025", "sáng ngày một tháng tư năm hai nghìn không trăm hai mươi lăm"),
    ("ngày 20.01.2020", "ngày hai mươi tháng một năm hai nghìn không trăm hai mươi"),
    ("ngày 15-8-2025", "ngày mười lăm tháng tám năm hai nghìn không trăm hai mươi lăm"),
    ("ngày 31/12/1999", "ngày ba mươi mốt tháng mười hai năm một nghìn chín trăm chín mươi chín"),
    ("ngày 2/9/1945", "ngày hai tháng chín năm một nghìn chín trăm bốn mươi lăm"),
    ("ngày 12/3/25", "ngày mười hai tháng ba năm hai mươi lăm"),
    ("Từ ngày 15/12/2025 đến ngày 15/1/2026",
     "từ ngày mười lăm tháng mười hai năm hai nghìn không trăm hai mươi lăm đến ngày mười lăm "
     "tháng một năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 15, 16, 17/12", "ngày mười lăm, mười sáu, mười bảy tháng mười hai"),
])
def test_reads_full_dates(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_does_not_say_ngay_twice():
    assert said(normalize("ngày 12/3/2025")).count("ngày") == 1
    assert said(normalize("Ngày 12/3/2025")).count("ngày") == 1


def test_says_mung_for_early_days():
    assert normalize("trước ngày 05/6") == "trước ngày mùng năm tháng sáu"


@pytest.mark.parametrize("text, spoken", [
    ("Báo cáo trước ngày 05/6", "báo cáo trước ngày năm tháng sáu"),
    ("trước 15/12", "trước ngày mười lăm tháng mười hai"),
    ("dịp lễ 30/4", "dịp lễ ngày ba mươi tháng tư"),
    ("ngày 2/9", "ngày hai tháng chín"),
    ("từ ngày 01/4 đến 30/4", "từ ngày một tháng tư đến ba mươi tháng tư"),
    ("từ 01/4 - 30/4", "từ ngày một tháng tư đến ba mươi tháng tư"),
    ("ngày 30-4", "ngày ba mươi tháng tư"),
    ("mít tinh sáng 8-3", "mít tinh sáng ngày tám tháng ba"),
    ("Ngày Quốc tế Phụ nữ 8/3", "ngày quốc tế phụ nữ ngày tám tháng ba"),
    ("nghỉ Tết từ 28/1 - 3/2", "nghỉ tết từ ngày hai mươi tám tháng một đến ba tháng hai"),
    ("ngày 10 tháng 8 năm 2018", "ngày mười tháng tám năm hai nghìn không trăm mười tám"),
    ("ngày 25 tháng 5 năm 2018", "ngày hai mươi lăm tháng năm năm hai nghìn không trăm mười tám"),
    ("tháng 4 năm nay", "tháng tư năm nay"),
    ("tháng 1", "tháng một"),
])
def test_reads_day_month_dates(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Hoàn thành trong tháng 12/2025",
     "hoàn thành trong tháng mười hai năm hai nghìn không trăm hai mươi lăm"),
    ("vào tháng 01/2020", "vào tháng một năm hai nghìn không trăm hai mươi"),
    ("từ 3/2026", "từ tháng ba năm hai nghìn không trăm hai mươi sáu"),
    ("tháng 4/2024", "tháng tư năm hai nghìn không trăm hai mươi tư"),
    ("quý 2/2025", "quý hai năm hai nghìn không trăm hai mươi lăm"),
    ("đợt 1/2025", "đợt một năm hai nghìn không trăm hai mươi lăm"),
    ("trước 24/7", "trước ngày hai mươi tư tháng bảy"),
])
def test_reads_month_year(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Khoảng 2/3 số hộ", "khoảng hai phần ba số hộ"),
    ("chiếm 1/4 diện tích", "chiếm một phần tư diện tích"),
    ("Nhà số 12/3 đường Lê Lợi", "nhà số mười hai xuyệt ba đường lê lợi"),
    ("hẻm 45/12 Lũy Bán Bích", "hẻm bốn mươi lăm xuyệt mười hai lũy bán bích"),
    ("trực 24/24", "trực hai mươi tư trên hai mươi tư"),
    ("phục vụ 24/7", "phục vụ hai mươi tư trên bảy"),
    ("Điểm 8/10", "điểm tám trên mười"),
    ("tỷ lệ 1:500", "tỷ lệ một trên năm trăm"),
])
def test_reads_slashes_that_are_not_dates(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Lúc 7h30 sáng", "lúc bảy giờ ba mươi phút sáng"),
    ("lúc 7h", "lúc bảy giờ"),
    ("lúc 17h05", "lúc mười bảy giờ năm phút"),
    ("lúc 17h45 chiều nay", "lúc mười bảy giờ bốn mươi lăm phút chiều nay"),
    ("lúc 7:30", "lúc bảy giờ ba mươi phút"),
    ("lúc 07:30", "lúc bảy giờ ba mươi phút"),
    ("lúc 14:30:15", "lúc mười bốn giờ ba mươi phút mười lăm giây"),
    ("lúc 12h00 trưa", "lúc mười hai giờ trưa"),
    ("lúc 7g30", "lúc bảy giờ ba mươi phút"),
    ("lúc 8H15", "lúc tám giờ mười lăm phút"),
    ("lúc 7 giờ 30", "lúc bảy giờ ba mươi phút"),
    ("lúc 7 giờ 30 phút", "lúc bảy giờ ba mươi phút"),
    ("vào hồi 14 giờ 00", "vào hồi mười bốn giờ"),
    ("lúc 10g sáng", "lúc mười giờ sáng"),
    ("lúc 19h30 tối nay", "lúc mười chín giờ ba mươi phút tối nay"),
    ("lúc 0h", "lúc không giờ"),
    ("trực 24h", "trực hai mươi tư giờ"),
    ("Cắt điện từ 6h đến 17h", "cắt điện từ sáu giờ đến mười bảy giờ"),
])
def test_reads_clock_times(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_say_time_skips_zero_minutes():
    assert say_time(7) == "bảy giờ"
    assert say_time(7, 30) == "bảy giờ ba mươi phút"


@pytest.mark.parametrize("text, spoken", [
    ("Giai đoạn 2017 - 2020, tầm nhìn đến năm 2025",
     "giai đoạn hai nghìn không trăm mười bảy đến hai nghìn không trăm hai mươi, "
     "tầm nhìn đến năm hai nghìn không trăm hai mươi lăm"),
    ("năm học 2024-2025",
     "năm học hai nghìn không trăm hai mươi tư đến hai nghìn không trăm hai mươi lăm"),
    ("giai đoạn 2021–2025",
     "giai đoạn hai nghìn không trăm hai mươi mốt đến hai nghìn không trăm hai mươi lăm"),
    ("từ 7h-9h", "từ bảy giờ đến chín giờ"),
    ("từ 7h30 - 11h30", "từ bảy giờ ba mươi phút đến mười một giờ ba mươi phút"),
    ("nặng 20-25 kg", "nặng hai mươi đến hai mươi lăm ki lô gam"),
    ("nặng 20kg-25kg", "nặng hai mươi ki lô gam đến hai mươi lăm ki lô gam"),
    ("nhiệt độ 25-30°C", "nhiệt độ hai mươi lăm đến ba mươi độ xê"),
    ("mưa 50 – 100 mm", "mưa năm mươi đến một trăm mi li mét"),
    ("từ 1-2 ngày", "từ một đến hai ngày"),
    ("từ 8:00-11:30", "từ tám giờ đến mười một giờ ba mươi phút"),
])
def test_reads_dash_between_numbers_as_den(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_does_not_read_dash_in_codes_as_den():
    assert "đến" not in normalize("Xe biển số 51F-123.45")
    assert "đến" not in normalize("Mã HS-2025-0012")


def test_keeps_dash_between_words():
    assert normalize("kinh tế - xã hội") == "kinh tế - xã hội"
