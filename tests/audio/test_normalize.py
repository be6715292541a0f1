"""The normaliser end to end: whole bulletins, punctuation, Unicode, ward lexicon, CLI."""
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from audio.normalize import load_lexicon, normalize

ROOT = Path(__file__).resolve().parents[2]


def said(text: str) -> str:
    """The words of ``text``, lower-case, punctuation, spacing and "mùng" ignored."""
    return " ".join(w for w in re.findall(r"\w+", text.lower()) if w != "mùng")


@pytest.mark.parametrize("text, spoken", [
    ("UBND phường 7 thông báo: từ 8h đến 11h30 ngày 15/3/2026 tạm ngưng cấp nước tại KP 2.",
     "ủy ban nhân dân phường bảy thông báo: từ tám giờ đến mười một giờ ba mươi phút ngày mười "
     "lăm tháng ba năm hai nghìn không trăm hai mươi sáu tạm ngưng cấp nước tại khu phố hai."),
    ("Trạm Y tế tiêm vắc xin COVID-19 cho trẻ từ 5 đến 11 tuổi, mang theo thẻ BHYT.",
     "trạm y tế tiêm vắc xin cô vít mười chín cho trẻ từ năm đến mười một tuổi, mang theo thẻ "
     "bảo hiểm y tế."),
    ("Mức phạt từ 2.000.000đ đến 3.000.000đ.",
     "mức phạt từ hai triệu đồng đến ba triệu đồng."),
    ("Dự báo mưa 100-150mm, gió cấp 8, nhiệt độ 24°C.",
     "dự báo mưa một trăm đến một trăm năm mươi mi li mét, gió cấp tám, "
     "nhiệt độ hai mươi tư độ xê."),
    ("Liên hệ Công an phường, ĐT: 0283.816.1234 hoặc gọi 113.",
     "liên hệ công an phường, điện thoại: không hai tám ba, tám một sáu, một hai ba bốn hoặc gọi "
     "một một ba."),
    ("Thực hiện Kế hoạch số 74/KH-UBND ngày 24/3/2022 của UBND TP.",
     "thực hiện kế hoạch số bảy mươi tư, kế hoạch ủy ban nhân dân ngày hai mươi tư tháng ba năm "
     "hai nghìn không trăm hai mươi hai của ủy ban nhân dân thành phố."),
    ("Thí điểm tại Quận 1, 12 và TP Thủ Đức.",
     "thí điểm tại quận một, mười hai và thành phố thủ đức."),
    ("Công dân nam sinh năm 2008 đăng ký NVQS từ ngày 01/4 đến 30/4.",
     "công dân nam sinh năm hai nghìn không trăm lẻ tám đăng ký nghĩa vụ quân sự từ ngày một "
     "tháng tư đến ba mươi tháng tư."),
])
def test_reads_whole_bulletin_sentences(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_keeps_sentence_punctuation():
    out = normalize("UBND phường thông báo: Ngày 5/6, cắt điện. Xin cảm ơn!")
    assert out == "ủy ban nhân dân phường thông báo: Ngày mùng năm tháng sáu, cắt điện. Xin cảm ơn!"


def test_never_drops_words():
    text = ("Đề nghị bà con chủ động sắp xếp công việc, úp ngược các vật dụng chứa nước; "
            "ngủ màn kể cả ban ngày.")
    assert normalize(text) == text


def test_output_has_no_digits_for_numeric_families():
    text = ("Ngày 12/3/2025 lúc 7h30, 1.250.000đ, 1,5m, 38°C, 100%, 0909 123 456, Quý IV, "
            "150/KH-UBND, 2017 - 2020, 17h05, 10.000m2, COVID-19, tháng 12/2025")
    assert not re.search(r"\d", normalize(text))


def test_survives_arbitrary_input_without_breaking_the_line():
    import random
    rng = random.Random(7)
    alphabet = "aAđĐỦơ0123456789 .,:;/-–%°²hgxIVX()+@&~≥'\"\t"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        out = normalize(text)
        assert "\n" not in out


def test_blank_and_whitespace_lines_stay_blank():
    assert normalize("") == ""
    assert normalize("   ") == ""


def test_keeps_line_breaks():
    assert normalize("Dòng 1\n\nDòng 2") == "Dòng một\n\nDòng hai"


@pytest.mark.parametrize("text, spoken", [
    (unicodedata.normalize("NFD", "Ủy ban nhân dân phường 5"), "Ủy ban nhân dân phường năm"),
    ("Uỷ ban nhân dân", "Ủy ban nhân dân"),
    ("hoà giải ở cơ sở", "hòa giải ở cơ sở"),
    ("sức khoẻ", "sức khỏe"),
    ("thuỷ lợi", "thủy lợi"),
    ("quỷ", "quỷ"),
    ("Hoàng Hoa Thám", "Hoàng Hoa Thám"),
    ("UBND\u00a0phường", "ủy ban nhân dân phường"),
])
def test_normalises_unicode_and_tone_placement(text, spoken):
    assert normalize(text) == spoken


@pytest.mark.parametrize("text", [
    "Truy cập dichvucong.gov.vn để nộp hồ sơ.",
    "Gửi thư về ubnd.p5@tphcm.gov.vn trước.",
    "Xem https://tanphu.hochiminhcity.gov.vn/tin-tuc/2025 ngay.",
])
def test_leaves_urls_and_emails_untouched(text):
    assert normalize(text) == text


def test_ward_lexicon_adds_entries():
    lexicon = {"TSN": "tân sơn nhì", "Celadon": "xê la đon"}
    assert normalize("UBND phường TSN, công viên Celadon", lexicon) == (
        "ủy ban nhân dân phường tân sơn nhì, công viên xê la đon")


def test_ward_lexicon_takes_precedence_over_builtin():
    assert normalize("UBND phường", {"UBND": "ủy ban"}) == "ủy ban phường"
    assert normalize("Ban BCH", {"BCH": "ban chấp hành"}) == "Ban ban chấp hành"


def test_ward_lexicon_matches_all_caps_keys_case_sensitively_and_whole_words():
    lexicon = {"TSN": "tân sơn nhì"}
    assert normalize("tsn và TSNX", lexicon) == "tsn và TSNX"


def test_ward_lexicon_matches_names_in_any_case():
    lexicon = {"Lũy Bán Bích": "lũy bán bích"}
    assert normalize("đường LŨY BÁN BÍCH", lexicon) == "đường lũy bán bích"


def test_ward_lexicon_is_used_inside_document_numbers():
    assert said(normalize("số 5/KH-BCĐ389", {"BCĐ389": "ban chỉ đạo ba tám chín"})) == (
        "số năm kế hoạch ban chỉ đạo ba tám chín")


def test_loads_tsv_lexicon(tmp_path):
    path = tmp_path / "ward.tsv"
    path.write_text("# ward 5\nTSN\ttân sơn nhì\n\nLBB\tlũy bán bích\nbad line\n", encoding="utf-8")
    assert load_lexicon(path) == {"TSN": "tân sơn nhì", "LBB": "lũy bán bích"}


def run_cli(stdin: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audio.normalize", *args], input=stdin,
                          capture_output=True, text=True, encoding="utf-8", cwd=ROOT, timeout=60)


def test_cli_writes_one_line_per_line_and_keeps_blank_lines():
    lines = ["UBND phường 5 thông báo", "", "Lúc 7h30 sáng", "   ", "Có 105 hộ"]
    run = run_cli("\n".join(lines) + "\n")
    assert run.returncode == 0, run.stderr
    out = run.stdout.split("\n")
    assert out[-1] == ""
    out = out[:-1]
    assert len(out) == len(lines)
    assert out[0] == "ủy ban nhân dân phường năm thông báo"
    assert out[1] == "" and out[3] == ""
    assert out[2] == "Lúc bảy giờ ba mươi phút sáng"
    assert out[4] == "Có một trăm lẻ năm hộ"


def test_cli_handles_crlf_and_missing_final_newline():
    run = run_cli("Quý IV\r\n100%")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Quý bốn\nmột trăm phần trăm\n"


def test_cli_never_splits_a_line_on_unicode_line_separators():
    run = run_cli("trang\x0c5\ndòng\u20287\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["trang năm", "dòng bảy"]


def test_cli_rejects_a_missing_lexicon_file(tmp_path):
    run = run_cli("x\n", "--lexicon", str(tmp_path / "missing.tsv"))
    assert run.returncode == 2 and "lexicon" in run.stderr


def test_cli_reads_a_ward_lexicon(tmp_path):
    path = tmp_path / "ward.tsv"
    path.write_text("TSN\ttân sơn nhì\n", encoding="utf-8")
    run = run_cli("phường TSN\n", "--lexicon", str(path))
    assert run.returncode == 0, run.stderr
    assert run.stdout == "phường tân sơn nhì\n"


def test_cli_answers_each_line_before_the_next_arrives():
    proc = subprocess.Popen([sys.executable, "-m", "audio.normalize"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, encoding="utf-8", cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for line, expected in (("Có 21 hộ", "Có hai mươi mốt hộ"), ("", ""),
                               ("15 km", "mười lăm ki lô mét")):
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == expected + "\n"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
