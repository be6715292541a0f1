"""Money, units after numbers, and phone numbers."""
import re

import pytest

from audio.normalize import normalize, say_phone


def said(text: str) -> str:
    """The words of ``text``, lower-case, punctuation and spacing ignored."""
    return " ".join(re.findall(r"\w+", text.lower()))


@pytest.mark.parametrize("text, spoken", [
    ("Lệ phí 50.000 đồng", "lệ phí năm mươi nghìn đồng"),
    ("Mức hỗ trợ 1.250.000đ mỗi hộ", "mức hỗ trợ một triệu hai trăm năm mươi nghìn đồng mỗi hộ"),
    ("Giá vé 50.000đ", "giá vé năm mươi nghìn đồng"),
    ("Phí 20.000 đ", "phí hai mươi nghìn đồng"),
    ("Phạt 2.000.000 VNĐ", "phạt hai triệu đồng"),
    ("Phạt 500.000VND", "phạt năm trăm nghìn đồng"),
    ("Thu 15.000 vnđ", "thu mười lăm nghìn đồng"),
    ("Doanh thu trên 100 triệu đồng/năm", "doanh thu trên một trăm triệu đồng một năm"),
    ("Hỗ trợ 5 triệu đ", "hỗ trợ năm triệu đồng"),
    ("Giá 25.000 đ/kg", "giá hai mươi lăm nghìn đồng một ki lô gam"),
    ("Lương 5,5 triệu đồng/tháng", "lương năm phẩy năm triệu đồng một tháng"),
    ("Tổng 1,5 tỷ đồng", "tổng một phẩy năm tỷ đồng"),
    ("Chỉ 50k", "chỉ năm mươi nghìn"),
    ("Khoảng 100 USD", "khoảng một trăm đô la mỹ"),
])
def test_reads_money(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Mực nước lên 1,5m", "mực nước lên một phẩy năm mét"),
    ("cao hơn mặt đường 0,5m", "cao hơn mặt đường không phẩy năm mét"),
    ("Nhiệt độ ngoài trời 38°C", "nhiệt độ ngoài trời ba mươi tám độ xê"),
    ("nhiệt độ 38 °C", "nhiệt độ ba mươi tám độ xê"),
    ("nhiệt độ 35oC", "nhiệt độ ba mươi lăm độ xê"),
    ("nhiệt độ 37 độ C", "nhiệt độ ba mươi bảy độ xê"),
    ("Âm -5°C", "âm âm năm độ xê"),
    ("Lượng mưa đo được 120mm", "lượng mưa đo được một trăm hai mươi mi li mét"),
    ("Cách bờ khoảng 15 km", "cách bờ khoảng mười lăm ki lô mét"),
    ("dài 30cm", "dài ba mươi xen ti mét"),
    ("Diện tích 10.000m2", "diện tích mười nghìn mét vuông"),
    ("rộng 500 m²", "rộng năm trăm mét vuông"),
    ("hồ chứa 2.000 m3", "hồ chứa hai nghìn mét khối"),
    ("diện tích 2,5 km2", "diện tích hai phẩy năm ki lô mét vuông"),
    ("trồng 12 ha lúa", "trồng mười hai héc ta lúa"),
    ("hỗ trợ 10kg gạo", "hỗ trợ mười ki lô gam gạo"),
    ("gói 500g", "gói năm trăm gam"),
    ("3 tấn hàng", "ba tấn hàng"),
    ("5 lít dầu", "năm lít dầu"),
    ("chai 1,5l", "chai một phẩy năm lít"),
    ("lọ 250ml", "lọ hai trăm năm mươi mi li lít"),
    ("tốc độ 50 km/h", "tốc độ năm mươi ki lô mét một giờ"),
    ("điện áp 220V", "điện áp hai trăm hai mươi vôn"),
    ("Diện tích 3x4m", "diện tích ba nhân bốn mét"),
    ("mật độ 100 người/km2", "mật độ một trăm người một ki lô mét vuông"),
    ("uống 3 lần/ngày", "uống ba lần một ngày"),
    ("giá mỗi m2", "giá mỗi mét vuông"),
])
def test_reads_units_after_numbers(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Đường dây nóng 0283.123.4567", "đường dây nóng không hai tám ba một hai ba bốn năm sáu bảy"),
    ("số điện thoại 0909 123 456", "số điện thoại không chín không chín một hai ba bốn năm sáu"),
    ("gọi 0909123456", "gọi không chín không chín một hai ba bốn năm sáu"),
    ("ĐT: 0912.345.678", "điện thoại không chín một hai ba bốn năm sáu bảy tám"),
    ("SĐT 0987-654-321", "số điện thoại không chín tám bảy sáu năm bốn ba hai một"),
    ("ĐT: (028) 3812 3456", "điện thoại không hai tám ba tám một hai ba bốn năm sáu"),
    ("Liên hệ +84 909 123 456", "liên hệ cộng tám bốn chín không chín một hai ba bốn năm sáu"),
    ("Hotline 1900 1234", "hotline một chín không không một hai ba bốn"),
    ("tổng đài 1900.6868", "tổng đài một chín không không sáu tám sáu tám"),
    ("gọi 1800 1091", "gọi một tám không không một không chín một"),
    ("Gọi 113, 114, 115 khi cần", "gọi một một ba, một một bốn, một một năm khi cần"),
    ("hệ thống 113-114-115", "hệ thống một một ba, một một bốn, một một năm"),
    ("gọi cấp cứu 115", "gọi cấp cứu một một năm"),
    ("báo cháy 114", "báo cháy một một bốn"),
    ("tổng đài 1022", "tổng đài một không hai hai"),
    ("Đường dây nóng: 0283.816.1234.",
     "đường dây nóng không hai tám ba tám một sáu một hai ba bốn"),
])
def test_reads_phone_numbers_digit_by_digit(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_reads_113_as_a_number_without_a_phone_cue():
    assert said(normalize("Có 113 hộ dân")) == "có một trăm mười ba hộ dân"


def test_reads_long_codes_with_leading_zero_digit_by_digit():
    assert said(normalize("Số CCCD 079123456789")) == (
        "số căn cước công dân không bảy chín một hai ba bốn năm sáu bảy tám chín")


def test_groups_phone_digits_with_commas_for_pauses():
    assert say_phone("0283.123.4567") == "không hai tám ba, một hai ba, bốn năm sáu bảy"
    assert say_phone("0909123456") == "không chín không chín, một hai ba, bốn năm sáu"
