"""Vietnamese text normalisation for the ward loudspeakers' TTS engine.

``normalize(text)`` turns written administrative Vietnamese into the words a TTS engine
should say: numbers, dates, times, money, units, phone numbers, Roman numerals and
abbreviations become words; sentence punctuation (commas, full stops) is kept so the voice
pauses naturally; nothing else is dropped. It is a functional core with no I/O; the CLI
is ``python -m audio.normalize [--lexicon ward.tsv]`` (one line in, one line out).

Rules are applied line by line in this order (see ``PIPELINE``); every rule replaces what
it understands by lower-case words without digits, so later rules never re-read them:

 1. Unicode: NFC, plain spaces, one tone placement ("hoà" → "hòa"); URLs and e-mail
    addresses are set aside untouched.
 2. Document numbers, before anything splits them: "150/KH-UBND", "12/2020/NĐ-CP",
    "03-NQ/TU".
 3. Abbreviations: the ward lexicon first, then the built-in one (``lexicon.py``), with
    context rules for ambiguous ones (CA, ĐT, P., Q., TT, BCH, CP, KT., TM.).
 4. Roman numerals after "Phần, Chương, Mục, khóa, lần thứ, Quý…" and in headings.
 5. Special terms (H5N1, 3x4), phone numbers (digit by digit), ranges ("-" → "đến"),
    dates, clock times, money, units, per-unit slashes, mixed tokens (F0, B2, 4G),
    left-over number pairs, plain numbers, symbols.
 6. All-caps Vietnamese heading words are lower-cased (unknown acronyms stay as written).

Choices made where Vietnamese usage varies (documented here, tested in tests/):

* Document numbers: the number is read as a number, the slash is silent, a year is
  introduced by "năm", and the code is expanded part by part with dashes silent:
  "số 150/KH-UBND" → "số một trăm năm mươi, kế hoạch ủy ban nhân dân";
  "Nghị định 12/2020/NĐ-CP" → "nghị định mười hai năm hai nghìn không trăm hai mươi,
  nghị định chính phủ". Code parts not in the tables are left as written.
* 24 → "hai mươi tư", 105 → "một trăm lẻ năm", thousands are "nghìn", month 4 is
  "tháng tư", days 1–10 in dates take "mùng", "thứ 1/4" → "thứ nhất/tư".
* Phone numbers are read digit by digit with a comma between the written groups; 113,
  114, 115… are read digit by digit after a cue ("gọi", "công an", "cấp cứu"…) and as
  numbers otherwise.
* "a/b" after an address word ("số", "hẻm", "ngõ"…) is read "a xuyệt b"; a fraction cue
  ("chiếm 2/3 số hộ") gives "hai phần ba"; other valid d/m pairs are dates.
* "đồng/tháng" → "đồng một tháng"; VNĐ/VND/đ → "đồng"; "°C" → "độ xê".
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache, wraps

from . import rules
from .lexicon import ABBREVIATIONS, DOC_TYPES, UNITS, Lexicon, load_lexicon
from .numbers import (
    digits_to_words,
    number_to_words,
    ordinal_to_words,
    read_number_string,
    roman_to_int,
)
from .rules import say_phone, say_time
from .text import canonical_unicode, lowercase_caps_words

__all__ = [
    "normalize", "normalize_line", "number_to_words", "digits_to_words", "ordinal_to_words",
    "read_number_string", "roman_to_int", "say_phone", "say_time", "load_lexicon", "Lexicon",
    "ABBREVIATIONS", "DOC_TYPES", "UNITS", "PIPELINE",
]

def _text_only(rule: Callable[[str], str]) -> rules.Rule:
    """Adapt a rule that needs no lexicon to the ``(text, lexicon)`` signature."""
    @wraps(rule)
    def adapted(text: str, lexicon: Lexicon) -> str:
        return rule(text)
    return adapted


#: the rules, in the order they are applied to each line (after Unicode clean-up)
PIPELINE: tuple[rules.Rule, ...] = (
    rules.expand_document_numbers,
    rules.split_ampersand_abbreviations,
    rules.expand_abbreviations,
    _text_only(rules.expand_roman_numerals),
    _text_only(rules.expand_special_terms),
    _text_only(rules.expand_phone_numbers),
    _text_only(rules.expand_ranges),
    _text_only(rules.expand_negative_numbers),
    _text_only(rules.expand_dates),
    _text_only(rules.expand_times),
    _text_only(rules.expand_money),
    _text_only(rules.expand_units),
    _text_only(rules.expand_per_units),
    rules.expand_mixed_tokens,
    _text_only(rules.expand_number_pairs),
    _text_only(rules.expand_symbols_before_numbers),
    _text_only(rules.expand_numbers),
    _text_only(rules.expand_symbols),
    _text_only(lowercase_caps_words),
)

_DEFAULT_LEXICON = Lexicon.build()


@lru_cache(maxsize=32)
def _ward_lexicon(entries: tuple[tuple[str, str], ...]) -> Lexicon:
    return Lexicon.build(dict(entries))


def normalize_line(line: str, lexicon: Lexicon) -> str:
    """Normalise one line (no newline inside) with a prepared ``Lexicon``."""
    text, kept = rules.protect_urls(canonical_unicode(line))
    for rule in PIPELINE:
        text = rule(text, lexicon)
    return rules.restore_urls(rules.tidy_spaces(text), kept)


def normalize(text: str, lexicon: Mapping[str, str] | None = None) -> str:
    """The spoken form of ``text`` for a Vietnamese TTS engine.

    ``lexicon`` holds per-ward entries (abbreviation or place name → spoken form) that take
    precedence over the built-in ones; all-caps keys match case-sensitively, whole words.
    Line breaks are kept: each line is normalised on its own.
    """
    lex = _DEFAULT_LEXICON if not lexicon else _ward_lexicon(tuple(sorted(lexicon.items())))
    return "\n".join(normalize_line(line, lex) for line in text.split("\n"))
