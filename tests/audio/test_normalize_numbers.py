"""Reading numbers: cardinals, leading zeros, thousands dots, decimal commas, percentages."""
import re

import pytest

from audio.normalize import (digits_to_words, normalize, number_to_words, ordinal_to_words,
                             read_number_string, roman_to_int)


def said(text: str) -> str:
    """The words of ``text``, lower-case, punctuation and spacing ignored."""
    return " ".join(re.findall(r"\w+", text.lower()))


@pytest.mark.parametrize("n, words", [
    (0, "không"),
    (1, "một"),
    (5, "năm"),
    (10, "mười"),
    (11, "mười một"),
    (14, "mười bốn"),
    (15, "mười lăm"),
    (19, "mười chín"),
    (20, "hai mươi"),
    (21, "hai mươi mốt"),
    (24, "hai mươi tư"),
    (25, "hai mươi lăm"),
    (31, "ba mươi mốt"),
    (45, "bốn mươi lăm"),
    (55, "năm mươi lăm"),
    (99, "chín mươi chín"),
    (100, "một trăm"),
    (101, "một trăm lẻ một"),
    (105, "một trăm lẻ năm"),
    (110, "một trăm mười"),
    (111, "một trăm mười một"),
    (115, "một trăm mười lăm"),
    (121, "một trăm hai mươi mốt"),
    (204, "hai trăm lẻ bốn"),
    (999, "chín trăm chín mươi chín"),
    (1000, "một nghìn"),
    (1001, "một nghìn không trăm lẻ một"),
    (1010, "một nghìn không trăm mười"),
    (1015, "một nghìn không trăm mười lăm"),
    (1100, "một nghìn một trăm"),
    (1975, "một nghìn chín trăm bảy mươi lăm"),
    (2000, "hai nghìn"),
    (2008, "hai nghìn không trăm lẻ tám"),
    (2021, "hai nghìn không trăm hai mươi mốt"),
    (2025, "hai nghìn không trăm hai mươi lăm"),
    (10000, "mười nghìn"),
    (15000, "mười lăm nghìn"),
    (21000, "hai mươi mốt nghìn"),
    (100000, "một trăm nghìn"),
    (250000, "hai trăm năm mươi nghìn"),
    (1000000, "một triệu"),
    (1005000, "một triệu không trăm lẻ năm nghìn"),
    (1250000, "một triệu hai trăm năm mươi nghìn"),
    (1000500, "một triệu năm trăm"),
    (20000000, "hai mươi triệu"),
    (1000000000, "một tỷ"),
    (1500000000, "một tỷ năm trăm triệu"),
    (2005000000, "hai tỷ không trăm lẻ năm triệu"),
    (3000000001, "ba tỷ không trăm lẻ một"),
    (1000000000000, "một nghìn tỷ"),
    (-5, "âm năm"),
])
def test_reads_whole_numbers(n, words):
    assert number_to_words(n) == words


def test_reads_105_with_le():
    assert number_to_words(105) == "một trăm lẻ năm"


def test_reads_mot_and_lam_only_after_tens():
    assert number_to_words(1) == "một" and number_to_words(21).endswith("mốt")
    assert number_to_words(5) == "năm" and number_to_words(15).endswith("lăm")
    assert number_to_words(11) == "mười một"


@pytest.mark.parametrize("digits, words", [
    ("0283", "không hai tám ba"),
    ("115", "một một năm"),
    ("0909", "không chín không chín"),
])
def test_reads_digits_one_by_one(digits, words):
    assert digits_to_words(digits) == words


@pytest.mark.parametrize("n, words", [(1, "nhất"), (2, "hai"), (4, "tư"), (14, "mười bốn")])
def test_reads_ordinals_after_thu(n, words):
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize("token, words", [
    ("1.000", "một nghìn"),
    ("1.250.000", "một triệu hai trăm năm mươi nghìn"),
    ("10.000", "mười nghìn"),
    ("1,5", "một phẩy năm"),
    ("0,5", "không phẩy năm"),
    ("2,25", "hai phẩy hai mươi lăm"),
    ("1,05", "một phẩy không năm"),
    ("1.250,5", "một nghìn hai trăm năm mươi phẩy năm"),
    ("1,250,000", "một triệu hai trăm năm mươi nghìn"),
    ("4.0", "bốn chấm không"),
    ("05", "năm"),
    ("007", "không không bảy"),
])
def test_reads_written_number_strings(token, words):
    assert read_number_string(token) == words


@pytest.mark.parametrize("numeral, value", [
    ("I", 1), ("II", 2), ("III", 3), ("IV", 4), ("V", 5), ("VI", 6), ("IX", 9), ("XII", 12),
    ("XIII", 13), ("XIV", 14), ("XV", 15), ("XIX", 19), ("XXI", 21), ("XL", 40),
    ("IIII", None), ("VV", None), ("ABC", None), ("", None),
])
def test_converts_roman_numerals(numeral, value):
    assert roman_to_int(numeral) == value


@pytest.mark.parametrize("text, spoken", [
    ("Có 105 hộ bị ảnh hưởng", "có một trăm lẻ năm hộ bị ảnh hưởng"),
    ("Hơn 1.000 người tham gia", "hơn một nghìn người tham gia"),
    ("Dân số 1.250.000 người", "dân số một triệu hai trăm năm mươi nghìn người"),
    ("Tổng cộng 21 đơn vị", "tổng cộng hai mươi mốt đơn vị"),
    ("Có 45 ca mắc mới", "có bốn mươi lăm ca mắc mới"),
    ("Gồm 24 tổ dân phố", "gồm hai mươi tư tổ dân phố"),
    ("Trẻ em dưới 6 tuổi", "trẻ em dưới sáu tuổi"),
    ("Từ đầu năm 2021 đến nay", "từ đầu năm hai nghìn không trăm hai mươi mốt đến nay"),
    ("Sinh năm 2008", "sinh năm hai nghìn không trăm lẻ tám"),
    ("Dịch vụ công mức độ 3, 4", "dịch vụ công mức độ ba, bốn"),
    ("Tổ 05 khu phố 2", "tổ năm khu phố hai"),
    ("Thứ 2 và thứ 4 hằng tuần", "thứ hai và thứ tư hằng tuần"),
    ("Đạt giải thứ 1", "đạt giải thứ nhất"),
    ("Bão số 9", "bão số chín"),
    ("Tăng 2,5 lần", "tăng hai phẩy năm lần"),
    ("Ngân sách 1,5 tỷ đồng", "ngân sách một phẩy năm tỷ đồng"),
    ("Công nghệ 4.0", "công nghệ bốn chấm không"),
    ("Mục 2.1. Mục tiêu", "mục hai chấm một. mục tiêu"),
    ("1. Mục đích", "một. mục đích"),
    ("Nhiệt độ -3 độ", "nhiệt độ âm ba độ"),
    ("Có 1.005.000 lượt truy cập", "có một triệu không trăm lẻ năm nghìn lượt truy cập"),
    ("Khoảng 2.000.000.000 đồng", "khoảng hai tỷ đồng"),
    ("Tổ chức 01 đến 02 cuộc thi", "tổ chức một đến hai cuộc thi"),
])
def test_reads_numbers_in_sentences(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("100% hộ dân được thông tin", "một trăm phần trăm hộ dân được thông tin"),
    ("Tăng 20% so với cùng kỳ", "tăng hai mươi phần trăm so với cùng kỳ"),
    ("Lãi suất 2,5%", "lãi suất hai phẩy năm phần trăm"),
    ("Chiếm 0,05 %", "chiếm không phẩy không năm phần trăm"),
    ("Đạt 95%, vượt 5%", "đạt chín mươi lăm phần trăm, vượt năm phần trăm"),
    ("Từ 10-15%", "từ mười đến mười lăm phần trăm"),
])
def test_reads_percentages(text, spoken):
    assert said(normalize(text)) == said(spoken)
