"""The rewriting rules of the normaliser, one small pure function per family.

Every rule takes a line of text and returns it with the spans it understands replaced by
their spoken (lower-case) words. Spoken words contain no digits, so a later rule never
re-reads what an earlier one produced; ``audio.normalize.normalize`` applies the rules in
a fixed order (see ``PIPELINE`` there).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .lexicon import CURRENCIES, LETTER_NAMES, PER_UNITS, UNITS, Lexicon
from .numbers import (
    digits_to_words,
    number_to_words,
    ordinal_to_words,
    read_integer_string,
    read_number_string,
    roman_to_int,
)

# --------------------------------------------------------------------------- helpers

NUM = r"\d+(?:[.,]\d+)*"
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _prev_words(text: str, pos: int, n: int = 1) -> list[str]:
    """The ``n`` words just before ``pos``, lower-cased (nearest last)."""
    return [w.lower() for w in _WORD.findall(text[max(0, pos - 80):pos])][-n:]


def _prev_word(text: str, pos: int) -> str:
    words = _prev_words(text, pos, 1)
    return words[0] if words else ""


def _prev_text_ends_with(text: str, pos: int, phrases: tuple[str, ...]) -> bool:
    """Whether the words before ``pos`` end with one of ``phrases`` (lower-case, spaced)."""
    before = " ".join(_prev_words(text, pos, 4))
    return any(before == p or before.endswith(" " + p) for p in phrases)


def _next_word(text: str, pos: int) -> str:
    m = _WORD.search(text, pos)
    if not m or text[pos:m.start()].strip(" :.") != "":
        return ""
    return m.group(0)


def _say_month(month: int) -> str:
    return "tư" if month == 4 else number_to_words(month)


def _say_day(day: int) -> str:
    return ("mùng " if day <= 10 else "") + number_to_words(day)


def _say_year(year: str) -> str:
    return read_integer_string(year.lstrip("0") or "0")


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1]


# --------------------------------------------------------------------------- protection

_PROTECT = re.compile(
    r"(?:https?://|www\.)[^\s]+[^\s.,;:!?)\]}'\"”]"
    r"|(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<![\w@.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:vn|com|net|org|edu|gov|info)(?:/[^\s]*[^\s.,;:!?)])?(?![\w.]*\w)"
)


def protect_urls(text: str) -> tuple[str, list[str]]:
    """Replace URLs, e-mail addresses and domain names by placeholders (left as written)."""
    kept: list[str] = []

    def hide(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f"\ue000{chr(0xE100 + len(kept) - 1)}\ue001"

    return _PROTECT.sub(hide, text), kept


def restore_urls(text: str, kept: list[str]) -> str:
    """Put back what ``protect_urls`` hid."""
    return re.sub("\ue000(.)\ue001", lambda m: kept[ord(m.group(1)) - 0xE100], text)


# --------------------------------------------------------------------------- documents

_CODE_PART = r"[A-ZĐƯ][A-Za-zĐđƯư&]*\d*"
_CODE = rf"{_CODE_PART}(?:-{_CODE_PART})*"
_DOC_NUMBER = re.compile(
    rf"(?<![\w/.,])(?P<num>\d+)(?:\s?/\s?(?P<year>\d{{4}}))?\s?/\s?(?P<code>{_CODE})(?![\w&])"
)
_PARTY_DOC_NUMBER = re.compile(
    rf"(?<![\w/.,])(?P<num>\d+)-(?P<kind>{_CODE_PART})/(?P<code>{_CODE})(?![\w&])"
)
_BLANK_DOC_NUMBER = re.compile(rf"(?<![\w/])/(?P<code>{_CODE_PART}(?:-{_CODE_PART})+)(?![\w&])")


def _say_code_part(part: str, lexicon: Lexicon) -> str:
    spoken = lexicon.lookup_code(part)
    if spoken is not None:
        return spoken
    m = re.fullmatch(r"([^\d]+)(\d+)", part)
    if m:
        letters = lexicon.lookup_code(m.group(1))
        if letters is not None:
            return f"{letters} {number_to_words(int(m.group(2)))}"
    if "&" in part:
        pieces = [lexicon.lookup_code(p) for p in part.split("&")]
        if all(pieces):
            return " và ".join(pieces)  # type: ignore[arg-type]
    return part


def say_document_code(code: str, lexicon: Lexicon) -> str:
    """Spoken form of a document code: "QĐ-TTg" → "quyết định thủ tướng" (dashes silent)."""
    return " ".join(_say_code_part(p, lexicon) for p in code.split("-") if p)


def _is_code(code: str) -> bool:
    return sum(ch.isupper() for ch in code) >= 2


def expand_document_numbers(text: str, lexicon: Lexicon) -> str:
    """Document numbers: "150/KH-UBND" → "một trăm năm mươi, kế hoạch ủy ban nhân dân".

    The number is read as a number, the slash is silent, a year is introduced by "năm"
    ("12/2020/NĐ-CP" → "mười hai năm hai nghìn không trăm hai mươi, nghị định chính phủ"),
    and the code is expanded part by part (unknown parts are left as written). Party
    documents "03-NQ/TU" read "ba, nghị quyết thành ủy"; a blank number "/KH-UBND" reads the
    code alone.
    """
    def doc(m: re.Match[str]) -> str:
        code = m.group("code")
        if not _is_code(code):
            return m.group(0)
        words = read_integer_string(m.group("num"))
        if m.group("year"):
            words += " năm " + _say_year(m.group("year"))
        return f"{words}, {say_document_code(code, lexicon)}"

    def party(m: re.Match[str]) -> str:
        code = m.group("kind") + "-" + m.group("code")
        if not _is_code(code):
            return m.group(0)
        return f"{read_integer_string(m.group('num'))}, {say_document_code(code, lexicon)}"

    def blank(m: re.Match[str]) -> str:
        return say_document_code(m.group("code"), lexicon)

    text = _PARTY_DOC_NUMBER.sub(party, text)
    text = _DOC_NUMBER.sub(doc, text)
    return _BLANK_DOC_NUMBER.sub(blank, text)


# --------------------------------------------------------------------------- abbreviations

#: abbreviations conventionally written with a dot ("TP.", "P.", "KT."), which the dot belongs to
_DOT_ABBREVIATIONS = {"TP", "Tp", "tp", "P", "Q", "TT", "TX", "KT", "TM", "TL", "TUQ", "KP"}
#: abbreviations whose reading depends on the words around them
_CONTEXTUAL = ("CA", "ĐT", "P", "Q", "TT", "TX", "BCH", "CP", "KT", "TM", "TL", "TUQ")
_ADMIN_UNITS = ("phường", "xã", "quận", "huyện", "tỉnh", "thành", "tp", "thị", "các", "p", "q",
                "tx", "tt")
_SIGNATURES = {"KT": "ký thay", "TM": "thay mặt", "TL": "thừa lệnh", "TUQ": "thừa ủy quyền"}


def _followed_by_name(after: str) -> bool:
    """``after`` (text following an abbreviation and its dot) starts with a proper name."""
    m = re.match(r"\s*(\S+)(?:\s+(\S+))?", after)
    if not m:
        return False
    first, second = m.group(1), m.group(2) or ""
    if first[0].isdigit():
        return True
    if not first[0].isupper():
        return False
    if first.isupper() and len(first) > 1:
        return True
    return bool(second) and second[0].isupper()


def expand_contextual_abbreviation(key: str, text: str, start: int, end: int,
                                   dotted: bool) -> str | None:
    """Reading of an ambiguous abbreviation at ``text[start:end]``, or None to leave it.

    CA → "công an" before an administrative unit; ĐT → "điện thoại" before a number;
    P./Q. → "phường"/"quận" before a name or number; TX. → "thị xã"; TT → "thường trực"
    before HĐND/UBND, "thông tư" before a number, "thị trấn" with a dot before a name,
    "trung tâm" before a capitalised word; BCH → "ban chấp hành" before Đảng/Đoàn/Hội...,
    else "ban chỉ huy"; CP → "cổ phần" after "công ty", "chính phủ" after
    "văn phòng"/"nghị định"; KT./TM./TL./TUQ. → signature formulas.
    """
    reader = _CONTEXT_READERS.get(key)
    if reader is not None:
        return reader(key, text, start, end, dotted)
    if key in _SIGNATURES:
        return _SIGNATURES[key] if dotted else None
    return None


def _read_ca(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    return "công an" if _next_word(text, end).lower() in _ADMIN_UNITS else None


def _read_dt(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    # "ĐT: 0909…", "ĐT (028)…", "ĐT liên hệ: 0909…"
    phone = r"\s*[:.]?\s*(?:[(+]|0|\d{5})"
    return "điện thoại" if re.match(rf"(?:\s+[^\W\d]+){{0,2}}{phone}", text[end:]) else None


def _read_ward_or_district(key: str, text: str, start: int, end: int,
                           dotted: bool) -> str | None:
    spoken = "phường" if key == "P" else "quận"
    if dotted or re.match(r"\d{1,2}(?!\w)", text[end:]):
        return spoken
    return None


def _read_tx(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    return "thị xã" if (dotted or (_next_word(text, end)[:1].isupper())) else None


def _read_tt(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    nxt = _next_word(text, end)
    if nxt in ("HĐND", "UBND", "Thành", "Tỉnh", "Quận", "Huyện", "Đảng", "MTTQ"):
        return "thường trực"
    if nxt[:1].isdigit():
        return "thông tư"
    if dotted:
        return "thị trấn"
    if nxt[:1].isupper() and not (nxt.isupper() and len(nxt) > 1):
        return "trung tâm"
    return None


def _read_bch(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    if _next_word(text, end).lower() in ("đoàn", "đảng", "công", "hội", "chi", "trung", "tw",
                                         "liên"):
        return "ban chấp hành"
    return "ban chỉ huy"


def _read_cp(key: str, text: str, start: int, end: int, dotted: bool) -> str | None:
    if _prev_text_ends_with(text, start, ("công ty", "cty", "ty", "ngân hàng")):
        return "cổ phần"
    if _prev_text_ends_with(text, start, ("văn phòng", "nghị định", "nghị quyết",
                                          "thủ tướng")):
        return "chính phủ"
    return None


_ContextReader = Callable[[str, str, int, int, bool], str | None]
_CONTEXT_READERS: dict[str, _ContextReader] = {
    "CA": _read_ca, "ĐT": _read_dt, "P": _read_ward_or_district, "Q": _read_ward_or_district,
    "TX": _read_tx, "TT": _read_tt, "BCH": _read_bch, "CP": _read_cp,
}


def split_ampersand_abbreviations(text: str, lexicon: Lexicon) -> str:
    """"PCCC&CNCH" → "PCCC và CNCH" when both halves are known and the whole is not."""
    def split(m: re.Match[str]) -> str:
        whole, a, b = m.group(0), m.group(1), m.group(2)
        if lexicon.lookup(whole) is None and lexicon.lookup(a) and lexicon.lookup(b):
            return f"{a} và {b}"
        return whole

    return re.sub(r"(?<![\w&])([A-ZĐ]{2,})&([A-ZĐ]{2,})(?![\w&])", split, text)


def _key_pattern(key: str) -> str:
    escaped = re.escape(key)
    return escaped if not any(ch.islower() for ch in key) else f"(?i:{escaped})"


def _lexicon_regex(lexicon: Lexicon) -> re.Pattern[str]:
    keys = set(lexicon.keys()) | set(_CONTEXTUAL)
    ordered = sorted(keys, key=lambda k: (-len(k), k))
    return re.compile(r"(?<![\w&])(?P<key>" + "|".join(_key_pattern(k) for k in ordered)
                      + r")(?P<dot>\.?)")


def expand_abbreviations(text: str, lexicon: Lexicon) -> str:
    """Whole-word abbreviations and names from the lexicon: "UBND" → "ủy ban nhân dân".

    All-caps keys are matched case-sensitively. The dot of "TP.", "P.", "KT." is eaten when
    a name follows ("TP.HCM", "TP. Hồ Chí Minh", "P.5") and kept as a full stop otherwise.
    """
    regex = lexicon.compiled.get("abbreviations")
    if regex is None:
        regex = lexicon.compiled["abbreviations"] = _lexicon_regex(lexicon)

    def expand(m: re.Match[str]) -> str:
        key, dot = m.group("key"), m.group("dot")
        end_key = m.end("key")
        after_dot = text[m.end():]
        if not dot and re.match(r"[\w&]", text[end_key:end_key + 1]):
            # glued to more letters/digits: only P5 / Q1 style is accepted
            if key in ("P", "Q") and not lexicon.is_user(key):
                spoken = expand_contextual_abbreviation(key, text, m.start(), end_key, False)
                return f"{spoken} " if spoken else key
            return m.group(0)
        dotted = False
        if dot and key in _DOT_ABBREVIATIONS:
            following = after_dot.lstrip()[:1]
            if re.match(r"[^\W_]", after_dot):          # glued: "TP.HCM", "P.5", "KP.3"
                dotted = True
            elif key in ("TP", "Tp", "tp", "KP"):        # "TP. Hồ Chí Minh" but "của TP. Sau đó"
                dotted = _followed_by_name(after_dot)
            else:                                        # "Q. Tân Phú", "KT. CHỦ TỊCH", "P. 5"
                dotted = following.isupper() or following.isdigit()
        if lexicon.is_user(key):
            spoken = lexicon.lookup(key)
        elif key in _CONTEXTUAL:
            spoken = expand_contextual_abbreviation(key, text, m.start(), end_key, dotted)
        else:
            spoken = lexicon.lookup(key)
        if spoken is None:
            return m.group(0)
        if dotted:
            return spoken + " "
        return spoken + dot

    return regex.sub(expand, text)


# --------------------------------------------------------------------------- roman numerals

_ROMAN_KEYWORDS = (
    "phần", "chương", "mục", "tiểu mục", "khóa", "khoá", "lần thứ", "thứ", "quý", "tập",
    "bài", "đại hội", "kỳ họp", "kì họp", "thế kỷ", "thế kỉ", "phụ lục", "tiết", "cấp",
    "hạng", "giai đoạn", "đợt", "vòng", "nhóm", "loại", "khu phố", "ấp", "hội nghị", "kỳ",
    "kì", "tuần", "học kỳ", "học kì", "quân khu", "vùng", "nhiệm kỳ", "khu vực",
)
_ROMAN = r"[IVXLC]+"
_ROMAN_AFTER_KEYWORD = re.compile(
    r"(?i:(?<!\w)(?P<kw>" + "|".join(sorted(_ROMAN_KEYWORDS, key=len, reverse=True)) + r"))"
    r"(?P<sp>\s+)(?P<list>" + _ROMAN + r"(?:\s*[,\-–]\s*" + _ROMAN + r"|\s+và\s+" + _ROMAN
    + r")*)(?P<year>\s?/\s?\d{4})?(?![\w])"
)
_ROMAN_HEADING = re.compile(r"^(?P<lead>\s*(?:[*#>]+\s*)?)(?P<num>[IVXL]+)"
                            r"(?P<tail>\s*[.):]|\s+[-–])",
                            re.M)


def _roman_value(numeral: str) -> int | None:
    if len(numeral) == 1 and numeral not in "IVX":
        return None
    return roman_to_int(numeral)


def expand_roman_numerals(text: str) -> str:
    """Roman numerals after "Phần, Chương, Mục, khóa, lần thứ, Quý…" and in headings.

    "Quý IV" → "quý bốn", "lần thứ IV" → "lần thứ tư", "Quý III, IV" → "quý ba, bốn",
    "II. NỘI DUNG" → "hai. NỘI DUNG". A lone "I" or an ordinary word is never touched.
    """
    def after_keyword(m: re.Match[str]) -> str:
        parts = re.split(r"(\s*[,\-–]\s*|\s+và\s+)", m.group("list"))
        ordinal = m.group("kw").lower().endswith("thứ")
        out = []
        for i, part in enumerate(parts):
            if i % 2:
                sep = part.strip()
                out.append(" đến " if sep in "-–" and sep else (", " if sep == "," else " và "))
                continue
            value = _roman_value(part)
            if value is None:
                return m.group(0)
            out.append(ordinal_to_words(value) if ordinal else number_to_words(value))
        year = m.group("year")
        if year:
            out.append(" năm " + _say_year(year.strip(" /")))
        return m.group("kw") + m.group("sp") + "".join(out)

    def heading(m: re.Match[str]) -> str:
        value = _roman_value(m.group("num"))
        if value is None:
            return m.group(0)
        return m.group("lead") + number_to_words(value) + m.group("tail")

    text = _ROMAN_AFTER_KEYWORD.sub(after_keyword, text)
    return _ROMAN_HEADING.sub(heading, text)


# --------------------------------------------------------------------------- special terms

_VIRUS = re.compile(r"(?<![\w])H(\d{1,2})N(\d{1,2})(?![\w])")


def expand_special_terms(text: str) -> str:
    """Virus strains "H5N1" → "hát năm en một"; "3x4" → "ba nhân bốn" signs between numbers."""
    text = _VIRUS.sub(lambda m: f"hát {number_to_words(int(m.group(1)))} en "
                                f"{number_to_words(int(m.group(2)))}", text)
    return re.sub(r"(?<=\d)\s?[x×]\s?(?=\d)", " nhân ", text)


# --------------------------------------------------------------------------- phones

_SEP = r"[ .\-]"
_PHONE_INTL = re.compile(rf"(?<![\w+])\+84{_SEP}?\(?0?\)?\d{{1,3}}"
                         rf"(?:{_SEP}?\d{{2,4}}){{2,3}}(?![\w])")
_PHONE = re.compile(
    rf"(?<![\w.,/+:])(?:\(0\d{{1,4}}\)\s?|0\d{{1,4}}{_SEP}?)\d{{2,4}}(?:{_SEP}?\d{{2,4}}){{0,4}}"
    rf"(?![\w])(?![.,]\d)"
)
_SERVICE_NUMBER = re.compile(
    rf"(?<![\w.,/])1[89]00{_SEP}?(?:\d{{4}}|\d{{2}}{_SEP}\d{{2}}{_SEP}\d{{2}}|\d{{3}}{_SEP}\d{{3}}|\d{{6}})"
    rf"(?![\w])(?![.,]\d)"
)
_PHONE_CUES = (r"đường dây nóng|hotline|tổng đài|điện thoại|số máy|fax|"
               r"gọi(?: điện)?(?: ngay)?(?: cho)?"
               r"(?: số)?|liên hệ(?: số)?|nhắn tin|zalo")
_HOTLINE_CUES = r"cấp cứu|báo cháy|cứu hỏa|chữa cháy|cứu nạn|cứu hộ|công an|cảnh sát|khẩn cấp"
_CUED_NUMBER = re.compile(
    rf"(?i:(?P<cue>{_PHONE_CUES}))(?P<gap>\s*(?:số|là|theo số)?\s*[:：]?\s*)"
    rf"(?P<num>\d{{3,5}}(?:[ .]\d{{2,4}}){{0,3}})(?![\w])(?![.,]\d)"
)
_HOTLINE_CHAIN = re.compile(r"(?<![\w.,])(?:11[1-6])(?:\s*[-–/,;]\s*(?:11[1-6]))+"
                            r"(?![\w])(?![.,]\d)")
_HOTLINE = re.compile(
    rf"(?i:(?P<cue>{_HOTLINE_CUES}))(?P<gap>[^\d.;]{{0,20}}?)(?P<num>11[1-6]|1022|1080)(?![\w])(?![.,]\d)"
)


def say_phone(number: str) -> str:
    """A phone number digit by digit, its written groups separated by commas.

    "0283.123.4567" → "không hai tám ba, một hai ba, bốn năm sáu bảy"; an ungrouped
    10- or 11-digit number is grouped 4-3-3(4).
    """
    prefix = ""
    if number.startswith("+"):
        prefix, number = "cộng ", number[1:]
    groups = [g for g in re.split(r"[^\d]+", number) if g]
    if len(groups) == 1 and len(groups[0]) in (10, 11):
        g = groups[0]
        groups = [g[:4], g[4:7], g[7:]]
    return prefix + ", ".join(digits_to_words(g) for g in groups)


def _digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def expand_phone_numbers(text: str) -> str:
    """Phone numbers read digit by digit.

    10–11 digits starting with 0 (with dots, spaces, dashes or "(028)"), +84 numbers,
    1800/1900 service numbers, any 3+ digit number after "điện thoại/hotline/đường dây
    nóng/tổng đài/gọi", and the emergency numbers 111–116 after "công an/cấp cứu/báo cháy…"
    ("gọi 114" → "gọi một một bốn"). Elsewhere "113" stays a number.
    """
    def domestic(m: re.Match[str]) -> str:
        whole = m.group(0)
        pieces = re.split(rf"({_SEP}|\s)", whole)
        # longest prefix of groups holding 10 or 11 digits
        for cut in range(len(pieces), 0, -1):
            head = "".join(pieces[:cut])
            if head != head.rstrip(" .-"):
                continue
            if _digit_count(head) in (10, 11):
                return say_phone(head) + "".join(pieces[cut:])
        return whole

    text = _PHONE_INTL.sub(lambda m: say_phone(m.group(0)), text)
    text = _HOTLINE_CHAIN.sub(lambda m: say_phone(m.group(0)), text)
    text = _PHONE.sub(domestic, text)
    text = _SERVICE_NUMBER.sub(lambda m: say_phone(m.group(0)), text)
    text = _CUED_NUMBER.sub(lambda m: m.group("cue") + m.group("gap") + say_phone(m.group("num")),
                            text)
    return _HOTLINE.sub(lambda m: m.group("cue") + m.group("gap") + say_phone(m.group("num")), text)


# --------------------------------------------------------------------------- ranges

_RANGE_SUFFIX = "|".join(re.escape(k) for k in sorted(
    (set(UNITS) | set(CURRENCIES)) - {"$", "độ C"}, key=len, reverse=True))
_NUMTOK = rf"\d+(?:[.,/:]\d+)*(?:[hHg](?:\d{{2}})?|\s?(?:{_RANGE_SUFFIX})(?![\w²³]))?"
_RANGE = re.compile(
    rf"(?<![\w.,/:\-])(?P<a>{_NUMTOK})(?P<s1>\s*)(?P<dash>[-–—])(?P<s2>\s*)(?P<b>{_NUMTOK})"
    rf"(?![\w.,/:]?\d)(?!-\d)(?![\w])"
)


def expand_ranges(text: str) -> str:
    """A dash between two numbers, dates or times reads "đến": "2017 - 2020", "7h-9h", "20-25 kg".

    "ngày 30-4" or a descending "8-3" (a date written with a dash) becomes "30/4" for the
    date rule instead.
    """
    def rng(m: re.Match[str]) -> str:
        a, b = m.group("a"), m.group("b")
        if (m.group("dash") == "-" and not m.group("s1") and a.isdigit() and b.isdigit()
                and _valid_day_month(int(a), int(b))
                and (_prev_word(text, m.start()) in ("ngày", "mùng", "lễ", "dịp")
                     or int(a) > int(b))):
            return f"{a}/{b}"  # "ngày 30-4", "sáng 8-3": a date, read by expand_dates
        return f"{a} đến {b}"

    return _RANGE.sub(rng, text)


# --------------------------------------------------------------------------- dates

_DMY = re.compile(r"(?<![\w/.,:])(\d{1,2})([/.\-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/]|[.,]\d)")
_MY = re.compile(r"(?<![\w/.,:])(\d{1,4})\s?/\s?(\d{4})(?![\w/]|[.,]\d)")
_DM = re.compile(r"(?<![\w/.,:])(\d{1,2})/(\d{1,2})(?![\w/]|[.,]\d)")

_DAY_WORDS = ("ngày", "mùng", "mồng", "hôm")
_DOC_WORDS = ("số", "quyết định", "nghị định", "nghị quyết", "thông tư", "chỉ thị", "luật",
              "công văn", "kế hoạch", "thông báo", "báo cáo", "hướng dẫn", "pháp lệnh")
_ADDRESS_WORDS = ("số", "nhà", "hẻm", "hẽm", "ngõ", "ngách", "kiệt", "kiệt", "lô", "căn",
                  "phòng", "địa chỉ", "số nhà")
_FRACTION_BEFORE = ("chiếm", "khoảng", "gần", "hơn", "quá", "trên", "dưới", "đạt", "được",
                    "còn", "tăng", "giảm")
_FRACTION_AFTER = ("số", "dân", "diện", "tổng", "lượng", "thời", "trong")
_RATIO_BEFORE = ("điểm", "đạt điểm", "tỷ lệ", "tỉ lệ")
_NOT_MONTH_BEFORE = ("đợt", "kỳ", "kì", "lần", "phiên", "khóa", "khoá", "quý", "bản", "tập")
_DATE_CUES = ("ngày", "mùng", "mồng", "hôm", "trước", "sau", "từ", "đến", "tới", "hạn", "dịp",
              "lễ", "sáng", "chiều", "tối", "trưa", "đêm")


def _needs_day_word(text: str, pos: int) -> bool:
    """Whether a bare date at ``pos`` needs "ngày" in front of it."""
    prev = _prev_word(text, pos)
    if prev in _DAY_WORDS or prev.isdigit():  # "ngày 15, 16, 17/12" says "ngày" once
        return False
    if prev in ("đến", "tới", "và", "hoặc") or text[:pos].rstrip().endswith(("-", "–")):
        # the second date of "từ ngày 1/4 đến 30/4" or "từ 1/4 đến 30/4" says no "ngày"
        return ("ngày" not in _prev_words(text, pos, 12)
                and not re.search(r"\d{1,2}/\d{1,2}", text[max(0, pos - 40):pos]))
    return True


def expand_dates(text: str) -> str:
    """Dates: "12/3/2025" → "ngày mười hai tháng ba năm hai nghìn không trăm hai mươi lăm".

    "ngày 12/3/2025" does not say "ngày" twice; "05/6" → "ngày mùng năm tháng sáu"; days 1–10
    take "mùng"; "tháng 12/2025" → "tháng mười hai năm …"; month 4 is "tư". A d/m pair after
    an address word ("số 12/3", "hẻm 5/2") is read "mười hai xuyệt ba", and after
    "chiếm/khoảng/hơn…" or before "số/dân số…" as a fraction ("hai phần ba").
    """
    def dmy(m: re.Match[str]) -> str:
        day, month = int(m.group(1)), int(m.group(3))
        if not _valid_day_month(day, month):
            return m.group(0)
        words = f"{_say_day(day)} tháng {_say_month(month)} năm {_say_year(m.group(4))}"
        return ("ngày " if _needs_day_word(text, m.start()) else "") + words

    text = _DMY.sub(dmy, text)

    def my(m: re.Match[str]) -> str:
        first, year = m.group(1), m.group(2)
        prev = _prev_word(text, m.start())
        if prev in _NOT_MONTH_BEFORE or _prev_text_ends_with(text, m.start(), _DOC_WORDS):
            return f"{read_integer_string(first)} năm {_say_year(year)}"
        if not 1 <= int(first) <= 12 or len(first) > 2:
            return m.group(0)
        month_words = f"{_say_month(int(first))} năm {_say_year(year)}"
        return month_words if prev == "tháng" else "tháng " + month_words

    text = _MY.sub(my, text)

    def dm(m: re.Match[str]) -> str:
        a, b = int(m.group(1)), int(m.group(2))
        prev = _prev_word(text, m.start())
        if _prev_text_ends_with(text, m.start(), _ADDRESS_WORDS):
            return f"{read_integer_string(m.group(1))} xuyệt {read_integer_string(m.group(2))}"
        nxt = _next_word(text, m.end()).lower()
        if 0 < a < b and (prev in _FRACTION_BEFORE or nxt in _FRACTION_AFTER):
            return f"{number_to_words(a)} phần {'tư' if b == 4 else number_to_words(b)}"
        if (_prev_text_ends_with(text, m.start(), _RATIO_BEFORE)
                or (a, b) == (24, 7) and prev not in _DATE_CUES):
            return f"{number_to_words(a)} trên {number_to_words(b)}"  # "điểm 8/10", "24/7"
        if not _valid_day_month(a, b):
            return m.group(0)
        words = f"{_say_day(a)} tháng {_say_month(b)}"
        return ("ngày " if _needs_day_word(text, m.start()) else "") + words

    return _DM.sub(dm, text)


# --------------------------------------------------------------------------- times

_TIME_H = re.compile(r"(?<![\w.,:/])(\d{1,2})(?:\s?[hH]|g)(\d{2})?(?:\s?(?:phút|ph|p)|')?(?![\w])")
_TIME_WORDS = re.compile(r"(?<![\w.,:/])(\d{1,2})\s?giờ\s?(\d{1,2})(?:\s?phút)?(?![\w])")
_TIME_COLON = re.compile(r"(?<![\w.,:/])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\w:]|[.,]\d)")


def say_time(hour: int, minute: int = 0, second: int = 0) -> str:
    """ "bảy giờ ba mươi phút"; whole hours are just "bảy giờ"."""
    words = f"{number_to_words(hour)} giờ"
    if minute:
        words += f" {number_to_words(minute)} phút"
    if second:
        words += f" {number_to_words(second)} giây"
    return words


def expand_times(text: str) -> str:
    """Clock times: "7h", "7h30", "17h05", "7g30", "7:30", "07:30:15", "7 giờ 30" → "… giờ … phút".

    Zero minutes are not read ("14 giờ 00" → "mười bốn giờ")."""
    def hm(m: re.Match[str]) -> str:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if hour > 24 or minute > 59:
            return m.group(0)
        return say_time(hour, minute)

    def colon(m: re.Match[str]) -> str:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour > 24 or minute > 59 or second > 59:
            return m.group(0)
        return say_time(hour, minute, second)

    text = _TIME_WORDS.sub(hm, text)
    text = _TIME_H.sub(hm, text)
    return _TIME_COLON.sub(colon, text)


# --------------------------------------------------------------------------- money and units

def _alternation(keys: Iterable[str]) -> str:
    return "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))


_NO_SPACE_UNITS = {"k", "tr", "g", "l", "V", "W"}
_MONEY = re.compile(rf"(?<![\w.,])(?P<num>{NUM})(?P<sp>\s?)"
                    rf"(?P<cur>{_alternation(CURRENCIES)})(?![\w])")
_MONEY_AFTER_WORD = re.compile(r"(?<=\b)(triệu|tỷ|tỉ|nghìn|ngàn|trăm)\s?"
                               r"(đ|Đ|VNĐ|VND|vnđ|vnd)(?![\w])")
_DOLLAR = re.compile(rf"\$\s?(?P<num>{NUM})")
_UNIT = re.compile(rf"(?<![\w.,])(?P<num>{NUM})(?P<sp>\s?)"
                   rf"(?P<unit>{_alternation(UNITS)})(?![\w²³])")


def expand_money(text: str) -> str:
    """Money: "50.000đ", "50.000 VNĐ", "1.250.000 đồng" → "… đồng"; "5 triệu đ"; "$20"."""
    def money(m: re.Match[str]) -> str:
        cur = m.group("cur")
        return f"{read_number_string(m.group('num'), 'phẩy')} {CURRENCIES[cur]}"

    text = _MONEY.sub(money, text)
    text = _MONEY_AFTER_WORD.sub(lambda m: f"{m.group(1)} đồng", text)
    return _DOLLAR.sub(lambda m: f"{read_number_string(m.group('num'), 'phẩy')} đô la", text)


def expand_units(text: str) -> str:
    """Units after numbers: "1,5m" → "một phẩy năm mét", "38°C" → "… độ xê", "2,5%", "10.000m2"."""
    def unit(m: re.Match[str]) -> str:
        name = m.group("unit")
        if name in _NO_SPACE_UNITS and m.group("sp"):
            return m.group(0)
        return f"{read_number_string(m.group('num'), 'phẩy')} {UNITS[name]}"

    return _UNIT.sub(unit, text)


_PER_LEFT = (r"đồng|đô la(?: mỹ)?|nghìn|ngàn|triệu|tỷ|người|hộ|lượt|lần|suất|con|xe|chiếc|cái|"
             r"bộ|gam|mét|mét vuông|mét khối|lít|tấn|héc ta|giờ|phút|ngày|tuần|ki lô mét|"
             r"ki lô gam|phần trăm|hồ sơ|trường hợp|ca|cây|km|kg|m|ha")
_PER_UNIT = re.compile(rf"(?<![\w])(?P<left>{_PER_LEFT})\s?/\s?"
                       rf"(?P<unit>{_alternation(PER_UNITS)})(?![\w²³])")
_STANDALONE_UNITS = re.compile(r"(?<![\w])(km2|km²|m2|m²|m3|m³)(?![\w])")


def expand_per_units(text: str) -> str:
    """"đồng/tháng" → "đồng một tháng", "lần/ngày" → "lần một ngày"; "m2" alone → "mét vuông"."""
    text = re.sub(r"(?i)\bngày\s?/\s?tháng\s?/\s?năm\b", "ngày tháng năm", text)
    text = _PER_UNIT.sub(lambda m: f"{m.group('left')} một {PER_UNITS[m.group('unit')]}", text)
    return _STANDALONE_UNITS.sub(lambda m: UNITS[m.group(1)], text)


# --------------------------------------------------------------------------- mixed tokens

_MIXED = re.compile(r"(?<![\w&])(?=[\w&]*\d)(?=[\w&]*[^\W\d_])[\w&]+(?![\w])")


def expand_mixed_tokens(text: str, lexicon: Lexicon) -> str:
    """Tokens mixing letters and digits: "F0" → "ép không", "B2" → "bê hai", "4G" → "bốn gờ",
    "QH13" → "quốc hội mười ba". Unknown letter runs of two or more are left as written."""
    def mixed(m: re.Match[str]) -> str:
        out = []
        for run in re.findall(r"\d+|[^\d]+", m.group(0)):
            if run[0] in "0123456789":
                out.append(digits_to_words(run) if len(run) >= 4 else read_integer_string(run))
                continue
            spoken = lexicon.lookup(run)
            if spoken is None and len(run) == 1 and run.upper() in LETTER_NAMES:
                spoken = LETTER_NAMES[run.upper()]
            out.append(spoken if spoken is not None else run)
        return " ".join(out)

    return _MIXED.sub(mixed, text)


# --------------------------------------------------------------------------- plain numbers

_PAIR_SLASH = re.compile(r"(?<![\w/.,])(\d+)\s?/\s?(\d+)(?![\w/]|[.,]\d)")
_PAIR_COLON = re.compile(r"(?<![\w:.,])(\d+):(\d+)(?![\w:]|[.,]\d)")
_NEGATIVE = re.compile(r"(?:^|(?<=[\s(]))-(?=\d)")
_NUMBER = re.compile(rf"(?<![\w]){NUM}(?![\w])")
_DECIMAL_CONTEXT = re.compile(r"\s?(triệu|tỷ|tỉ|nghìn|ngàn|lần|độ|phần trăm)\b")


def expand_number_pairs(text: str) -> str:
    """Leftover "a/b" and "a:b" between numbers: "123/4" after an address word → "xuyệt",
    otherwise "trên" ("24/7" → "hai mươi bốn trên bảy", "1:500" → "một trên năm trăm")."""
    def slash(m: re.Match[str]) -> str:
        word = "xuyệt" if _prev_text_ends_with(text, m.start(), _ADDRESS_WORDS) else "trên"
        return f"{read_integer_string(m.group(1))} {word} {read_integer_string(m.group(2))}"

    text = _PAIR_SLASH.sub(slash, text)
    return _PAIR_COLON.sub(lambda m: f"{read_integer_string(m.group(1))} trên "
                                     f"{read_integer_string(m.group(2))}", text)


def expand_negative_numbers(text: str) -> str:
    """A minus glued to a number at the start of a word: "-5°C" → "âm 5°C" (read later)."""
    return _NEGATIVE.sub("âm ", text)


def expand_numbers(text: str) -> str:
    """Every other number: "105" → "một trăm lẻ năm", "1.000" → "một nghìn", "1,5" → "một phẩy năm".

    After "thứ" 1 and 4 read "nhất" and "tư"; after "tháng" 4 reads "tư"; "ngày 5 tháng 6"
    reads "ngày mùng năm tháng sáu".
    """
    def number(m: re.Match[str]) -> str:
        token = m.group(0)
        prev = _prev_word(text, m.start())
        if token.isdigit() and len(token) <= 3:
            n = int(token)
            if prev == "thứ":
                return ordinal_to_words(n)
            if prev == "tháng" and 1 <= n <= 12:
                return _say_month(n)
            if prev in ("ngày", "mùng") and 1 <= n <= 31:
                nxt = _next_word(text, m.end()).lower()
                if prev == "ngày" and nxt == "tháng" and n <= 10:
                    return _say_day(n)
        mode = "phẩy" if _DECIMAL_CONTEXT.match(text, m.end()) else "chấm"
        return read_number_string(token, mode)

    return _NUMBER.sub(number, text)


# --------------------------------------------------------------------------- symbols

_SYMBOLS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\s&\s"), " và "),
    (re.compile(r"%"), " phần trăm"),
    (re.compile(r"°C\b"), " độ xê"),
    (re.compile(r"(?<=\s)~\s?(?=\d)"), "khoảng "),
    (re.compile(r"(?<=\s)(?:>=|≥)\s?(?=\d)"), "từ "),
    (re.compile(r"(?<=\s)(?:<=|≤)\s?(?=\d)"), "không quá "),
    (re.compile(r"(?<=\s)>\s?(?=\d)"), "trên "),
    (re.compile(r"(?<=\s)<\s?(?=\d)"), "dưới "),
)


def expand_symbols(text: str) -> str:
    """Symbols the TTS would skip: " & " → "và", "%" → "phần trăm", "~5" → "khoảng năm"."""
    for pattern, spoken in _SYMBOLS:
        text = pattern.sub(spoken, text)
    return text


def expand_symbols_before_numbers(text: str) -> str:
    """The symbols that must be read before the numbers they precede are (≥, ~, <, >)."""
    for pattern, spoken in _SYMBOLS[3:]:
        text = pattern.sub(spoken, text)
    return text


# --------------------------------------------------------------------------- tidy

def tidy_spaces(text: str) -> str:
    """One space between words, none before punctuation, none at the ends."""
    text = re.sub(r"[ ]{2,}", " ", text)
    text = re.sub(r" +([,.;:!?)\]}”])", r"\1", text)
    text = re.sub(r",(?=[^\s\d])", ", ", text)
    return text.strip()


Rule = Callable[[str, Lexicon], str]
