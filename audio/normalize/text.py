"""Unicode clean-up and letter-case helpers (pure functions)."""
from __future__ import annotations

import itertools
import re
import unicodedata

_TONES = ("\u0300", "\u0301", "\u0309", "\u0303", "\u0323")  # huyền sắc hỏi ngã nặng
_PAIRS = (("o", "a"), ("o", "e"), ("u", "y"))


def _tone_table() -> dict[str, str]:
    """New-style tone placement ("hoà", "thuỷ") → the traditional one ("hòa", "thủy")."""
    table: dict[str, str] = {}
    for first, second in _PAIRS:
        for tone in _TONES:
            new = first + unicodedata.normalize("NFC", second + tone)
            old = unicodedata.normalize("NFC", first + tone) + second
            table[new] = old
            table[new.upper()] = old.upper()
            table[new[0].upper() + new[1:]] = old[0].upper() + old[1:]
    return table


_TONE_TABLE = _tone_table()
# only at the end of a syllable ("hoàng" is the same in both styles) and never after q
# ("quỷ" keeps its tone on y)
_TONE_RE = re.compile(
    r"(?<![qQ])(" + "|".join(sorted(_TONE_TABLE, key=len, reverse=True)) + r")(?!\w)"
)

# tabs, odd spaces and the characters str.splitlines() would break a line at
_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000\t\r\x0b\x0c\x1c-\x1e\x85"
                     r"\u2028\u2029]")
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\ufeff]")
_DASHES = {"\u2010": "-", "\u2011": "-", "\u2212": "-"}


def _ascii_digits(text: str) -> str:
    """Other decimal digits (full-width "１２", Arabic-Indic…) as ASCII digits."""
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch
                   for ch in text)


def canonical_unicode(text: str) -> str:
    """NFC, ASCII digits, plain spaces, one tone placement ("hoà" → "hòa", "Uỷ" → "Ủy")."""
    text = _ascii_digits(unicodedata.normalize("NFC", text))
    text = _ZERO_WIDTH.sub("", text)
    text = _SPACES.sub(" ", text)
    for dash, plain in _DASHES.items():
        text = text.replace(dash, plain)
    return _TONE_RE.sub(lambda m: _TONE_TABLE[m.group(1)], text)


def strip_tones(word: str) -> str:
    """Base letters of a word: "Đường" → "duong"."""
    decomposed = unicodedata.normalize("NFD", word.lower().replace("đ", "d"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_SYLLABLE = re.compile(
    r"(ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdghklmnprstvx])?"
    r"[aeiouy]{1,3}"
    r"(ch|ng|nh|[cmnpt])?"
)


def is_vietnamese_syllable(word: str) -> bool:
    """Whether ``word`` can be a single Vietnamese syllable ("KHẨN" yes, "UBND" no)."""
    return bool(word) and bool(_SYLLABLE.fullmatch(strip_tones(word)))


_CAPS_WORD = re.compile(r"(?<![\w&])[^\W\d_]+(?![\w&])")


def _is_caps_token(token: str) -> bool:
    return len(token) > 1 and token.isupper() and token.isalpha()


def lowercase_caps_words(text: str) -> str:
    """Lower-case words of all-caps headings so the TTS reads rather than spells them.

    A capitalised token is lowered when it is a possible Vietnamese syllable and either has
    a Vietnamese letter outside ASCII ("KHẨN", "ĐÍCH") or is joined (by spaces or
    punctuation only) to a run containing such a word ("VIỆT NAM"). Other all-caps tokens
    (acronyms not in the lexicon: "WAN", "ICT", a lone "NAM") are left as written.
    """
    tokens = [m for m in _CAPS_WORD.finditer(text) if _is_caps_token(m.group(0))]
    syllable = [is_vietnamese_syllable(m.group(0)) for m in tokens]
    lower = [ok and not m.group(0).isascii() for m, ok in zip(tokens, syllable, strict=True)]
    joined = [
        not re.search(r"\w", text[a.end():b.start()]) and len(text[a.end():b.start()]) <= 3
        for a, b in itertools.pairwise(tokens)
    ]
    changed = True
    while changed:
        changed = False
        for i, ok in enumerate(syllable):
            if ok and not lower[i] and (
                (i > 0 and joined[i - 1] and lower[i - 1])
                or (i + 1 < len(tokens) and joined[i] and lower[i + 1])
            ):
                lower[i] = changed = True
    out, last = [], 0
    for m, low in zip(tokens, lower, strict=True):
        if low:
            out += [text[last:m.start()], m.group(0).lower()]
            last = m.end()
    out.append(text[last:])
    return "".join(out)
