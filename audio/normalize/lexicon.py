"""Word lists for the normaliser: abbreviations, document-type codes, units, letter names.

Keys written entirely in capitals (no lower-case letter) match case-sensitively; keys with a
lower-case letter ("Tp", "TTg", "Covid-19") match whatever the case. Abbreviations whose
meaning depends on the words around them (CA, ĐT, P., Q., TT, BCH, CP, KT., ...) are not
here but in ``rules.expand_contextual_abbreviation``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: administrative abbreviations read the same way wherever they stand
ABBREVIATIONS: dict[str, str] = {
    # government bodies
    "UBND": "ủy ban nhân dân",
    "HĐND": "hội đồng nhân dân",
    "MTTQ": "mặt trận tổ quốc",
    "MTTQVN": "mặt trận tổ quốc việt nam",
    "UBMTTQ": "ủy ban mặt trận tổ quốc",
    "UBMTTQVN": "ủy ban mặt trận tổ quốc việt nam",
    "ĐBQH": "đại biểu quốc hội",
    "UBTVQH": "ủy ban thường vụ quốc hội",
    "ĐCSVN": "đảng cộng sản việt nam",
    "CHXHCN": "cộng hòa xã hội chủ nghĩa",
    "XHCN": "xã hội chủ nghĩa",
    "TW": "trung ương",
    "TƯ": "trung ương",
    "BCĐ": "ban chỉ đạo",
    "BQL": "ban quản lý",
    "BĐD": "ban đại diện",
    "BTV": "ban thường vụ",
    "UBKT": "ủy ban kiểm tra",
    "HĐNVQS": "hội đồng nghĩa vụ quân sự",
    "NVQS": "nghĩa vụ quân sự",
    "CAND": "công an nhân dân",
    "QĐND": "quân đội nhân dân",
    "CSGT": "cảnh sát giao thông",
    "CSKV": "cảnh sát khu vực",
    "CCB": "cựu chiến binh",
    "HTX": "hợp tác xã",
    "TNHH": "trách nhiệm hữu hạn",
    "TMCP": "thương mại cổ phần",
    "DNTN": "doanh nghiệp tư nhân",
    "VP": "văn phòng",
    "CVP": "chánh văn phòng",
    "PCVP": "phó chánh văn phòng",
    "PCT": "phó chủ tịch",
    "CT": "chủ tịch",
    "CBCC": "cán bộ công chức",
    "CBCCVC": "cán bộ, công chức, viên chức",
    "NLĐ": "người lao động",
    # departments and sectors
    "GTVT": "giao thông vận tải",
    "TNMT": "tài nguyên và môi trường",
    "TN&MT": "tài nguyên và môi trường",
    "TN-MT": "tài nguyên và môi trường",
    "VHTT": "văn hóa thông tin",
    "VH-TT": "văn hóa thông tin",
    "VHTTDL": "văn hóa, thể thao và du lịch",
    "VHTT&DL": "văn hóa, thể thao và du lịch",
    "VH,TT&DL": "văn hóa, thể thao và du lịch",
    "VH-TT-DL": "văn hóa, thể thao và du lịch",
    "TTTT": "thông tin và truyền thông",
    "TT&TT": "thông tin và truyền thông",
    "TT-TT": "thông tin và truyền thông",
    "BTTTT": "bộ thông tin và truyền thông",
    "STTTT": "sở thông tin và truyền thông",
    "GDĐT": "giáo dục và đào tạo",
    "GD&ĐT": "giáo dục và đào tạo",
    "GD-ĐT": "giáo dục và đào tạo",
    "LĐTBXH": "lao động, thương binh và xã hội",
    "LĐTB&XH": "lao động, thương binh và xã hội",
    "LĐ-TB&XH": "lao động, thương binh và xã hội",
    "NNPTNT": "nông nghiệp và phát triển nông thôn",
    "NN&PTNT": "nông nghiệp và phát triển nông thôn",
    "KHĐT": "kế hoạch và đầu tư",
    "KH&ĐT": "kế hoạch và đầu tư",
    "KHCN": "khoa học và công nghệ",
    "KH&CN": "khoa học và công nghệ",
    "YT": "y tế",
    # public services and life
    "PCCC": "phòng cháy chữa cháy",
    "CNCH": "cứu nạn cứu hộ",
    "PCCC&CNCH": "phòng cháy chữa cháy và cứu nạn cứu hộ",
    "PCTT": "phòng chống thiên tai",
    "TKCN": "tìm kiếm cứu nạn",
    "PCTT&TKCN": "phòng chống thiên tai và tìm kiếm cứu nạn",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "BHTN": "bảo hiểm thất nghiệp",
    "ATTP": "an toàn thực phẩm",
    "VSATTP": "vệ sinh an toàn thực phẩm",
    "ATVSTP": "an toàn vệ sinh thực phẩm",
    "ANTT": "an ninh trật tự",
    "ANQP": "an ninh quốc phòng",
    "QP-AN": "quốc phòng an ninh",
    "QPAN": "quốc phòng an ninh",
    "ATGT": "an toàn giao thông",
    "TTATGT": "trật tự an toàn giao thông",
    "KT-XH": "kinh tế xã hội",
    "KTXH": "kinh tế xã hội",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "CNTT": "công nghệ thông tin",
    "CĐS": "chuyển đổi số",
    "ĐTTM": "đô thị thông minh",
    "CCHC": "cải cách hành chính",
    "TTHC": "thủ tục hành chính",
    "DVC": "dịch vụ công",
    "DVCTT": "dịch vụ công trực tuyến",
    "CMND": "chứng minh nhân dân",
    "CCCD": "căn cước công dân",
    "SĐT": "số điện thoại",
    "ĐTDĐ": "điện thoại di động",
    "ĐKKD": "đăng ký kinh doanh",
    "GCN": "giấy chứng nhận",
    "QSDĐ": "quyền sử dụng đất",
    "GPXD": "giấy phép xây dựng",
    "TDTT": "thể dục thể thao",
    "LĐLĐ": "liên đoàn lao động",
    "HLHPN": "hội liên hiệp phụ nữ",
    "HND": "hội nông dân",
    "HCCB": "hội cựu chiến binh",
    "ĐTN": "đoàn thanh niên",
    "TNCS": "thanh niên cộng sản",
    "ĐVTN": "đoàn viên thanh niên",
    "CLB": "câu lạc bộ",
    "NCT": "người cao tuổi",
    "NKT": "người khuyết tật",
    "GĐVH": "gia đình văn hóa",
    "TTYT": "trung tâm y tế",
    "TYT": "trạm y tế",
    "BV": "bệnh viện",
    "BVĐK": "bệnh viện đa khoa",
    "SXH": "sốt xuất huyết",
    "TCM": "tay chân miệng",
    "CSDL": "cơ sở dữ liệu",
    "BPMC": "bộ phận một cửa",
    "TTHCC": "trung tâm hành chính công",
    "LLVT": "lực lượng vũ trang",
    "DQTV": "dân quân tự vệ",
    "GPLX": "giấy phép lái xe",
    "PTGT": "phương tiện giao thông",
    "TNGT": "tai nạn giao thông",
    "VSMT": "vệ sinh môi trường",
    "BĐKH": "biến đổi khí hậu",
    "NTM": "nông thôn mới",
    "KHHGĐ": "kế hoạch hóa gia đình",
    "DS-KHHGĐ": "dân số kế hoạch hóa gia đình",
    "KP": "khu phố",
    "TDP": "tổ dân phố",
    "KDC": "khu dân cư",
    "KCN": "khu công nghiệp",
    "CNVC": "công nhân viên chức",
    "VN": "việt nam",
    "VNĐ": "đồng",
    "VND": "đồng",
    "USD": "đô la mỹ",
    # document codes written on their own
    "NĐ-CP": "nghị định chính phủ",
    "NQ-CP": "nghị quyết chính phủ",
    "QĐ-TTg": "quyết định thủ tướng",
    "CT-TTg": "chỉ thị thủ tướng",
    # places
    "TP": "thành phố",
    "Tp": "thành phố",
    "HCM": "hồ chí minh",
    "TPHCM": "thành phố hồ chí minh",
    "TP.HCM": "thành phố hồ chí minh",
    "HN": "hà nội",
    "QL": "quốc lộ",
    # health
    "COVID-19": "cô vít mười chín",
    "Covid-19": "cô vít mười chín",
    "COVID": "cô vít",
    "Covid": "cô vít",
    "SARS-CoV-2": "xát cô vi hai",
    "nCoV": "en cô vi",
    "SARS": "xát",
    "HIV": "hát i vê",
    "HIV/AIDS": "hát i vê ết",
    "AIDS": "ết",
    "vaccine": "vắc xin",
    "vắc-xin": "vắc xin",
}

#: codes inside document numbers ("150/KH-UBND", "12/2020/NĐ-CP")
DOC_TYPES: dict[str, str] = {
    "KH": "kế hoạch",
    "QĐ": "quyết định",
    "NĐ": "nghị định",
    "NQ": "nghị quyết",
    "CP": "chính phủ",
    "TTg": "thủ tướng",
    "TT": "thông tư",
    "TTLT": "thông tư liên tịch",
    "CT": "chỉ thị",
    "TB": "thông báo",
    "BC": "báo cáo",
    "CV": "công văn",
    "HD": "hướng dẫn",
    "TTr": "tờ trình",
    "KL": "kết luận",
    "QC": "quy chế",
    "QH": "quốc hội",
    "CTN": "chủ tịch nước",
    "L": "lệnh",
    "VPCP": "văn phòng chính phủ",
    "TU": "thành ủy",
    "QU": "quận ủy",
    "HU": "huyện ủy",
    "ĐU": "đảng ủy",
    "BTGTU": "ban tuyên giáo thành ủy",
    "BNV": "bộ nội vụ",
    "BYT": "bộ y tế",
    "BTC": "bộ tài chính",
    "BCA": "bộ công an",
    "BQP": "bộ quốc phòng",
    "BCT": "bộ công thương",
    "BXD": "bộ xây dựng",
    "BTP": "bộ tư pháp",
    "BGDĐT": "bộ giáo dục và đào tạo",
    "BGTVT": "bộ giao thông vận tải",
    "BTNMT": "bộ tài nguyên và môi trường",
    "BLĐTBXH": "bộ lao động, thương binh và xã hội",
    "BKHĐT": "bộ kế hoạch và đầu tư",
    "BNNPTNT": "bộ nông nghiệp và phát triển nông thôn",
    "BVHTTDL": "bộ văn hóa, thể thao và du lịch",
    "BKHCN": "bộ khoa học và công nghệ",
    "SYT": "sở y tế",
    "SNV": "sở nội vụ",
    "STC": "sở tài chính",
    "SXD": "sở xây dựng",
    "SGDĐT": "sở giáo dục và đào tạo",
    "STNMT": "sở tài nguyên và môi trường",
    "SGTVT": "sở giao thông vận tải",
    "VP": "văn phòng",
    "UB": "ủy ban",
    "KT": "kinh tế",
    "VX": "văn xã",
    "NC": "nội chính",
    "TH": "tổng hợp",
}

#: units written after a number; longest spellings are tried first
UNITS: dict[str, str] = {
    "km²": "ki lô mét vuông",
    "km2": "ki lô mét vuông",
    "m²": "mét vuông",
    "m2": "mét vuông",
    "m³": "mét khối",
    "m3": "mét khối",
    "cm²": "xen ti mét vuông",
    "cm2": "xen ti mét vuông",
    "km/h": "ki lô mét một giờ",
    "km": "ki lô mét",
    "cm": "xen ti mét",
    "mm": "mi li mét",
    "m": "mét",
    "ha": "héc ta",
    "kg": "ki lô gam",
    "mg": "mi li gam",
    "g": "gam",
    "tấn": "tấn",
    "ml": "mi li lít",
    "l": "lít",
    "lít": "lít",
    "°C": "độ xê",
    "° C": "độ xê",
    "oC": "độ xê",
    "độ C": "độ xê",
    "°": "độ",
    "%": "phần trăm",
    "kWh": "ki lô oát giờ",
    "kW": "ki lô oát",
    "MW": "mê ga oát",
    "W": "oát",
    "kV": "ki lô vôn",
    "V": "vôn",
    "tr": "triệu",
    "k": "nghìn",
}

#: money after a number: all read "đồng"
CURRENCIES: dict[str, str] = {
    "đồng": "đồng",
    "đ": "đồng",
    "Đ": "đồng",
    "VNĐ": "đồng",
    "VND": "đồng",
    "vnđ": "đồng",
    "vnd": "đồng",
    "USD": "đô la mỹ",
    "$": "đô la",
}

#: words that may follow "/" as a per-unit: "đồng/tháng" → "đồng một tháng"
PER_UNITS: dict[str, str] = {
    "năm": "năm", "tháng": "tháng", "ngày": "ngày", "tuần": "tuần", "quý": "quý",
    "giờ": "giờ", "h": "giờ", "phút": "phút", "s": "giây", "người": "người", "hộ": "hộ",
    "lượt": "lượt", "lần": "lần", "suất": "suất", "ca": "ca", "con": "con", "xe": "xe",
    "chiếc": "chiếc", "kg": "ki lô gam", "km": "ki lô mét", "m2": "mét vuông",
    "m²": "mét vuông", "m": "mét", "m3": "mét khối", "m³": "mét khối", "lít": "lít",
    "l": "lít", "ha": "héc ta", "tấn": "tấn", "km2": "ki lô mét vuông",
    "km²": "ki lô mét vuông", "cái": "cái", "bộ": "bộ", "hồ sơ": "hồ sơ", "đêm": "đêm",
}

#: Vietnamese names of letters, used when a single letter is glued to digits (F0, B2, H5N1)
LETTER_NAMES: dict[str, str] = {
    "A": "a", "B": "bê", "C": "xê", "D": "dê", "Đ": "đê", "E": "e", "F": "ép", "G": "gờ",
    "H": "hát", "I": "i", "J": "gi", "K": "ca", "L": "lờ", "M": "mờ", "N": "en", "O": "o",
    "P": "pê", "Q": "quy", "R": "rờ", "S": "ét", "T": "tê", "U": "u", "V": "vê",
    "W": "vê kép", "X": "ích", "Y": "i", "Z": "dét",
}


def _is_case_sensitive(key: str) -> bool:
    """All-caps keys (no lower-case letter) match case-sensitively."""
    return not any(ch.islower() for ch in key)


@dataclass
class Lexicon:
    """Abbreviation → spoken form, with per-ward entries taking precedence over built-ins."""

    exact: dict[str, str] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)
    user_exact: dict[str, str] = field(default_factory=dict)
    user_folded: dict[str, str] = field(default_factory=dict)
    #: compiled patterns built from the keys, filled by the rules on first use
    compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, extra: Mapping[str, str] | None = None) -> Lexicon:
        lex = cls()
        for key, value in ABBREVIATIONS.items():
            lex._add(key, value, user=False)
        for key, value in (extra or {}).items():
            if key and key.strip():
                lex._add(key.strip(), value.strip(), user=True)
        return lex

    def _add(self, key: str, value: str, user: bool) -> None:
        if _is_case_sensitive(key):
            (self.user_exact if user else self.exact)[key] = value
        else:
            (self.user_folded if user else self.folded)[key.lower()] = value

    def keys(self) -> list[str]:
        """Every key, longest first (so "TP.HCM" is tried before "TP")."""
        keys = set(self.exact) | set(self.user_exact) | set(self.folded) | set(self.user_folded)
        return sorted(keys, key=lambda k: (-len(k), k))

    def is_user(self, text: str) -> bool:
        return text in self.user_exact or text.lower() in self.user_folded

    def lookup(self, text: str) -> str | None:
        """Spoken form of ``text`` (exact for all-caps keys, any case otherwise), or None."""
        for table, probe in ((self.user_exact, text), (self.user_folded, text.lower()),
                             (self.exact, text), (self.folded, text.lower())):
            if probe in table:
                return table[probe]
        return None

    def lookup_code(self, code: str) -> str | None:
        """Spoken form of a document-number code such as "KH", "NĐ", "TTg", "UBND"."""
        if code in self.user_exact:
            return self.user_exact[code]
        if code in DOC_TYPES:
            return DOC_TYPES[code]
        return self.lookup(code)


def load_lexicon(path: str | Path) -> dict[str, str]:
    """Read a ward lexicon: UTF-8 TSV lines ``key<TAB>spoken``; blank lines and # comments
    skipped."""
    entries: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "\t" not in line:
            continue
        key, spoken = line.split("\t", 1)
        if key.strip():
            entries[key.strip()] = spoken.strip()
    return entries
