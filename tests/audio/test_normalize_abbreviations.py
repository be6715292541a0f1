"""Abbreviations, document numbers, Roman numerals and special terms."""
import re

import pytest

from audio.normalize import normalize


def said(text: str) -> str:
    """The words of ``text``, lower-case, punctuation and spacing ignored."""
    return " ".join(re.findall(r"\w+", text.lower()))


@pytest.mark.parametrize("text, spoken", [
    ("UBND phường 5 thông báo", "ủy ban nhân dân phường năm thông báo"),
    ("HĐND và UBND quận Tân Phú", "hội đồng nhân dân và ủy ban nhân dân quận tân phú"),
    ("Ban Thường trực UBMTTQ phường", "ban thường trực ủy ban mặt trận tổ quốc phường"),
    ("MTTQ Việt Nam", "mặt trận tổ quốc việt nam"),
    ("Mang theo thẻ BHYT", "mang theo thẻ bảo hiểm y tế"),
    ("Đóng BHXH tự nguyện", "đóng bảo hiểm xã hội tự nguyện"),
    ("Diễn tập PCCC tại chợ", "diễn tập phòng cháy chữa cháy tại chợ"),
    ("Đội PCCC&CNCH", "đội phòng cháy chữa cháy và cứu nạn cứu hộ"),
    ("Cảnh sát PCCC và CNCH", "cảnh sát phòng cháy chữa cháy và cứu nạn cứu hộ"),
    ("Bảo đảm ATTP dịp Tết", "bảo đảm an toàn thực phẩm dịp tết"),
    ("Học sinh trường THCS Lê Lợi", "học sinh trường trung học cơ sở lê lợi"),
    ("Kỳ thi tốt nghiệp THPT", "kỳ thi tốt nghiệp trung học phổ thông"),
    ("Ứng dụng CNTT trong cải cách hành chính",
     "ứng dụng công nghệ thông tin trong cải cách hành chính"),
    ("Công ty TNHH Minh Phát", "công ty trách nhiệm hữu hạn minh phát"),
    ("Công ty CP Cấp nước Chợ Lớn", "công ty cổ phần cấp nước chợ lớn"),
    ("Lực lượng CSGT", "lực lượng cảnh sát giao thông"),
    ("Đại biểu ĐBQH tiếp xúc cử tri", "đại biểu đại biểu quốc hội tiếp xúc cử tri"),
    ("Chiến sĩ CAND", "chiến sĩ công an nhân dân"),
    ("Ngày hội QĐND", "ngày hội quân đội nhân dân"),
    ("Các HTX nông nghiệp", "các hợp tác xã nông nghiệp"),
    ("Sở GTVT", "sở giao thông vận tải"),
    ("Phòng TN&MT quận", "phòng tài nguyên và môi trường quận"),
    ("Phòng TNMT", "phòng tài nguyên và môi trường"),
    ("Phòng VH-TT quận", "phòng văn hóa thông tin quận"),
    ("BCĐ phòng chống dịch", "ban chỉ đạo phòng chống dịch"),
    ("BCH Quân sự phường", "ban chỉ huy quân sự phường"),
    ("BCH Đoàn phường", "ban chấp hành đoàn phường"),
    ("CA phường phối hợp", "công an phường phối hợp"),
    ("Sở TT&TT", "sở thông tin và truyền thông"),
    ("Sở GD&ĐT", "sở giáo dục và đào tạo"),
    ("Phòng LĐ-TB&XH", "phòng lao động thương binh và xã hội"),
    ("xuất trình CCCD hoặc CMND", "xuất trình căn cước công dân hoặc chứng minh nhân dân"),
    ("SĐT liên hệ", "số điện thoại liên hệ"),
    ("ĐT liên hệ: 0909 555 666",
     "điện thoại liên hệ không chín không chín năm năm năm sáu sáu sáu"),
    ("Đường ĐT 741", "đường ĐT bảy trăm bốn mươi mốt"),
    ("Đại hội TDTT", "đại hội thể dục thể thao"),
    ("phòng chống SXH và TCM", "phòng chống sốt xuất huyết và tay chân miệng"),
    ("KP 3, KP.4, KP5", "khu phố ba, khu phố bốn, khu phố năm"),
    ("Khu phố 3, tổ dân phố 12", "khu phố ba, tổ dân phố mười hai"),
    ("TT Y tế quận", "trung tâm y tế quận"),
    ("TT. HĐND tỉnh", "thường trực hội đồng nhân dân tỉnh"),
    ("theo TT 01/2023", "theo thông tư một năm hai nghìn không trăm hai mươi ba"),
    ("UBND TT. Củ Chi", "ủy ban nhân dân thị trấn củ chi"),
    ("UBND TX. Dĩ An", "ủy ban nhân dân thị xã dĩ an"),
    ("KT. CHỦ TỊCH", "ký thay chủ tịch"),
    ("TM. ỦY BAN NHÂN DÂN", "thay mặt ủy ban nhân dân"),
    ("CT và các PCT UBND tỉnh", "chủ tịch và các phó chủ tịch ủy ban nhân dân tỉnh"),
    ("Xây dựng ĐTTM", "xây dựng đô thị thông minh"),
])
def test_expands_administrative_abbreviations(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("UBND TP.HCM ban hành kế hoạch", "ủy ban nhân dân thành phố hồ chí minh ban hành kế hoạch"),
    ("UBND TP. Hồ Chí Minh", "ủy ban nhân dân thành phố hồ chí minh"),
    ("UBND TP HCM", "ủy ban nhân dân thành phố hồ chí minh"),
    ("UBND TPHCM", "ủy ban nhân dân thành phố hồ chí minh"),
    ("Tp.HCM", "thành phố hồ chí minh"),
    ("Tp. Thủ Đức", "thành phố thủ đức"),
    ("UBND TP Thủ Đức", "ủy ban nhân dân thành phố thủ đức"),
    ("P.5, Q.3", "phường năm, quận ba"),
    ("Q. Tân Phú, P. Tân Sơn Nhì", "quận tân phú, phường tân sơn nhì"),
    ("P5, Q10", "phường năm, quận mười"),
    ("CA P.Tân Sơn Nhì", "công an phường tân sơn nhì"),
])
def test_expands_place_abbreviations(text, spoken):
    assert said(normalize(text)) == said(spoken)


def test_keeps_full_stop_after_tp_at_sentence_end():
    assert normalize("nhu cầu của TP. Giai đoạn sau") == "nhu cầu của thành phố. Giai đoạn sau"


@pytest.mark.parametrize("text", [
    "Chị Ca hát hay",         # ordinary word, not "CA"
    "ca mắc mới",             # lower-case word
    "mạng LAN, WAN",          # unknown acronyms stay as written
    "Mã số ABC",
    "Thông tin ICT",
    "Nộp qua eTax Mobile",
])
def test_leaves_ordinary_words_and_unknown_acronyms(text):
    assert normalize(text) == text


def test_leaves_ca_alone_when_not_before_an_administrative_unit():
    assert said(normalize("ca CA ca")) == "ca ca ca"


@pytest.mark.parametrize("text, spoken", [
    ("Số: 150/KH-UBND", "số: một trăm năm mươi, kế hoạch ủy ban nhân dân"),
    ("số 12/2020/NĐ-CP",
     "số mười hai năm hai nghìn không trăm hai mươi, nghị định chính phủ"),
    ("Quyết định 135/QĐ-TTg", "quyết định một trăm ba mươi lăm, quyết định thủ tướng"),
    ("Thông tư 01/2023/TT-BTTTT",
     "thông tư một năm hai nghìn không trăm hai mươi ba, thông tư bộ thông tin và truyền thông"),
    ("Chỉ thị 16/CT-TTg", "chỉ thị mười sáu, chỉ thị thủ tướng"),
    ("Thông báo 25/TB-UBND", "thông báo hai mươi lăm, thông báo ủy ban nhân dân"),
    ("Báo cáo 45/BC-UBND", "báo cáo bốn mươi lăm, báo cáo ủy ban nhân dân"),
    ("Công văn 1234/CV-UBND", "công văn một nghìn hai trăm ba mươi tư, công văn ủy ban nhân dân"),
    ("Nghị quyết 03-NQ/TU", "nghị quyết ba, nghị quyết thành ủy"),
    ("Kế hoạch số 457/KH-STTTT",
     "kế hoạch số bốn trăm năm mươi bảy, kế hoạch sở thông tin và truyền thông"),
    ("Luật số 68/2014/QH13",
     "luật số sáu mươi tám năm hai nghìn không trăm mười bốn, quốc hội mười ba"),
    ("Số: 192 /KH-UBND", "số: một trăm chín mươi hai, kế hoạch ủy ban nhân dân"),
    ("Số: /KH-UBND", "số: kế hoạch ủy ban nhân dân"),
    ("Công văn 123/UBND-VX", "công văn một trăm hai mươi ba, ủy ban nhân dân văn xã"),
    ("Công văn 77/UBND-ABC", "công văn bảy mươi bảy, ủy ban nhân dân abc"),
    ("theo NĐ-CP của Chính phủ", "theo nghị định chính phủ của chính phủ"),
    ("Quyết định 6179/QĐ-UBND ngày 23/11/2017",
     "quyết định sáu nghìn một trăm bảy mươi chín, quyết định ủy ban nhân dân ngày hai mươi ba "
     "tháng mười một năm hai nghìn không trăm mười bảy"),
])
def test_reads_document_numbers(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text, spoken", [
    ("Quý IV năm 2025", "quý bốn năm hai nghìn không trăm hai mươi lăm"),
    ("Quý III, IV năm 2019", "quý ba, bốn năm hai nghìn không trăm mười chín"),
    ("Quý I/2025", "quý một năm hai nghìn không trăm hai mươi lăm"),
    ("Chương II", "chương hai"),
    ("PHẦN I", "phần một"),
    ("Mục IX", "mục chín"),
    ("Đại hội lần thứ XIII", "đại hội lần thứ mười ba"),
    ("lần thứ IV", "lần thứ tư"),
    ("lần thứ I", "lần thứ nhất"),
    ("Quốc hội khóa XV", "quốc hội khóa mười lăm"),
    ("HĐND khoá XI", "hội đồng nhân dân khóa mười một"),
    ("thế kỷ XXI", "thế kỷ hai mươi mốt"),
    ("trường cấp III", "trường cấp ba"),
    ("học kỳ II", "học kỳ hai"),
    ("II. NỘI DUNG TRỌNG TÂM", "hai. nội dung trọng tâm"),
    ("IV. KINH PHÍ", "bốn. kinh phí"),
    ("I. MỤC ĐÍCH, YÊU CẦU", "một. mục đích, yêu cầu"),
])
def test_reads_roman_numerals_in_headings_and_after_keywords(text, spoken):
    assert said(normalize(text)) == said(spoken)


@pytest.mark.parametrize("text", [
    "Tôi là I.",
    "Vitamin C rất tốt",
    "loại C",
    "Ông X đã đến",
])
def test_does_not_mangle_lone_letters(text):
    assert normalize(text) == text


def test_lowercases_all_caps_vietnamese_heading_but_keeps_acronyms():
    assert normalize("XỬ LÝ VI PHẠM HÀNH CHÍNH") == "xử lý vi phạm hành chính"
    assert normalize("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM") == "cộng hòa xã hội chủ nghĩa việt nam"
    assert normalize("KHẨN CẤP.") == "khẩn cấp."
    assert normalize("mạng WAN") == "mạng WAN"


@pytest.mark.parametrize("text, spoken", [
    ("Tiêm vắc xin Covid-19 mũi 2", "tiêm vắc xin cô vít mười chín mũi hai"),
    ("Phòng chống dịch COVID-19", "phòng chống dịch cô vít mười chín"),
    ("dịch covid-19", "dịch cô vít mười chín"),
    ("virus SARS-CoV-2", "virus xát cô vi hai"),
    ("cúm gia cầm H5N1", "cúm gia cầm hát năm en một"),
    ("cúm A/H1N1", "cúm a hát một en một"),
    ("Các F0 và F1", "các ép không và ép một"),
    ("Thi bằng lái B2", "thi bằng lái bê hai"),
    ("Mạng 4G và 5G", "mạng bốn gờ và năm gờ"),
    ("tiêm vaccine", "tiêm vắc xin"),
])
def test_reads_health_and_technical_terms(text, spoken):
    assert said(normalize(text)) == said(spoken)
