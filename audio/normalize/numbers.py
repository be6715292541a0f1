"""Reading numbers aloud in Vietnamese (pure functions).

The readings follow the usual northern/broadcast conventions:

* ``mốt`` for a units 1 after a tens digit of 2 or more (21 → hai mươi mốt),
* ``lăm`` for a units 5 after any tens digit (15 → mười lăm, 25 → hai mươi lăm),
* ``tư`` for a units 4 after a tens digit of 2 or more (24 → hai mươi tư),
* ``lẻ`` when the tens digit is 0 after hundreds (105 → một trăm lẻ năm),
* ``không trăm`` for a zero hundreds digit inside a number (2025 → hai nghìn không trăm
  hai mươi lăm), and groups of three zeros are skipped (1.000.500 → một triệu năm trăm).
"""
from __future__ import annotations

import re

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")

_GROUP_SCALES = ((10**6, "triệu"), (10**3, "nghìn"), (1, ""))

#: numbers this long (or longer) are read digit by digit
MAX_NUMBER_DIGITS = 15


def _read_hundreds(n: int, full: bool) -> list[str]:
    """Words for 0 < n < 1000; ``full`` forces the hundreds ("không trăm") as inside a number."""
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words: list[str] = []
    if full or hundreds:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("lẻ")
            words.append(DIGITS[units])
    elif tens == 1:
        words.append("mười")
        if units == 5:
            words.append("lăm")
        elif units:
            words.append(DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units == 1:
            words.append("mốt")
        elif units == 4:
            words.append("tư")
        elif units == 5:
            words.append("lăm")
        elif units:
            words.append(DIGITS[units])
    return words


def _read_below_billion(n: int, full: bool) -> list[str]:
    """Words for 0 < n < 10**9; ``full`` when something bigger (tỷ) was said before."""
    words: list[str] = []
    started = full
    for scale, name in _GROUP_SCALES:
        group = (n // scale) % 1000
        if not group:
            continue
        words += _read_hundreds(group, full=started)
        if name:
            words.append(name)
        started = True
    return words


def number_to_words(n: int) -> str:
    """Read an integer as Vietnamese words: 105 → "một trăm lẻ năm", 10**9 → "một tỷ"."""
    if n < 0:
        return "âm " + number_to_words(-n)
    if n == 0:
        return DIGITS[0]
    if n >= 10**9:
        high, low = divmod(n, 10**9)
        text = number_to_words(high) + " tỷ"
        if low:
            text += " " + " ".join(_read_below_billion(low, full=True))
        return text
    return " ".join(_read_below_billion(n, full=False))


def digits_to_words(digits: str) -> str:
    """Read every digit of ``digits`` one by one: "0283" → "không hai tám ba"."""
    return " ".join(DIGITS[int(c)] for c in digits if c in "0123456789")


def ordinal_to_words(n: int) -> str:
    """The word after "thứ": 1 → "nhất", 4 → "tư", otherwise the cardinal."""
    if n == 1:
        return "nhất"
    if n == 4:
        return "tư"
    return number_to_words(n)


def read_integer_string(digits: str) -> str:
    """Read a run of digits as a number, keeping codes with leading zeros digit by digit.

    "05" → "năm" (two-digit numbers with a leading zero, as in dates), "007" → "không không
    bảy", anything of 15 digits or more is read digit by digit.
    """
    if len(digits) >= MAX_NUMBER_DIGITS:
        return digits_to_words(digits)
    if len(digits) > 2 and digits.startswith("0"):
        return digits_to_words(digits)
    return number_to_words(int(digits))


def read_fraction_digits(digits: str) -> str:
    """The part after a decimal comma: "5" → "năm", "25" → "hai mươi lăm", "05" → "không năm".

    Leading zeros are read as "không"; up to three digits are read as a number, longer tails
    digit by digit.
    """
    stripped = digits.lstrip("0")
    zeros = len(digits) - len(stripped)
    words = [DIGITS[0]] * zeros
    if stripped:
        if len(stripped) <= 3:
            words.append(number_to_words(int(stripped)))
        else:
            words.append(digits_to_words(stripped))
    return " ".join(words)


_THOUSANDS_DOTS = re.compile(r"\d{1,3}(?:\.\d{3})+")
_THOUSANDS_COMMAS = re.compile(r"\d{1,3}(?:,\d{3}){2,}")


def read_number_string(token: str, decimal_point: str = "chấm") -> str:
    """Read a written number as in Vietnamese text.

    * "1.250.000" → dots group thousands,
    * "1,5" → the comma is the decimal mark ("một phẩy năm"), "1.250,5" mixes both,
    * "1,250,000" (two or more comma groups) → English thousands,
    * "4.0" or "2.1.3" (dots that are not thousand groups) → "bốn chấm không"; pass
      ``decimal_point="phẩy"`` only when a dot is known to be a decimal mark.
    """
    token = token.strip()
    if re.fullmatch(r"\d+", token):
        return read_integer_string(token)
    if _THOUSANDS_COMMAS.fullmatch(token):
        return read_integer_string(token.replace(",", ""))
    integer, _, fraction = token.partition(",")
    if fraction and re.fullmatch(r"\d+", fraction):
        head = read_number_string(integer) if integer else DIGITS[0]
        return f"{head} phẩy {read_fraction_digits(fraction)}"
    if _THOUSANDS_DOTS.fullmatch(token):
        return read_integer_string(token.replace(".", ""))
    if re.fullmatch(r"\d+(?:\.\d+)+", token):
        parts = token.split(".")
        if len(parts) == 2 and decimal_point == "phẩy":
            return f"{read_integer_string(parts[0])} phẩy {read_fraction_digits(parts[1])}"
        return " chấm ".join(read_integer_string(p) for p in parts)
    # not a number we understand: read what digits there are
    return digits_to_words(token)


_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_ROMAN_RE = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")


def roman_to_int(numeral: str) -> int | None:
    """Value of a well-formed upper-case Roman numeral ("XIV" → 14), else None."""
    if not numeral or not _ROMAN_RE.fullmatch(numeral):
        return None
    total = 0
    for i, ch in enumerate(numeral):
        value = _ROMAN_VALUES[ch]
        if i + 1 < len(numeral) and _ROMAN_VALUES[numeral[i + 1]] > value:
            total -= value
        else:
            total += value
    return total
