"""The matching normaliser, table-driven. Display text is never passed through it."""
from __future__ import annotations

import pytest

from aggregator.arabic import STOP_WORDS, light_stem, normalize_for_matching, tokens

NORMALISE = [
    # tashkeel
    ("قُتِلَ", "قتل"),
    ("مُحَمَّدٌ", "محمد"),
    ("هٰذا", "هذا"),  # superscript alef
    # tatweel
    ("العــــربية", "العربيه"),
    # hamza / alef forms
    ("أحمد إسلام آمن ٱلله", "احمد اسلام امن الله"),
    ("مسؤول", "مسءول"),
    ("مسئول", "مسءول"),
    # alef maqsura, taa marbuta
    ("مستشفى", "مستشفي"),
    ("مدرسة", "مدرسه"),
    # Arabic-Indic and Persian digits, Arabic decimal separator
    ("٢٠١٨", "2018"),
    ("۱۳۹۷", "1397"),
    ("٣٫٥", "3.5"),
    # Arabic punctuation and quotes separate words
    ("قال، إن «الحرب» انتهت؛ لماذا؟", "قال ان الحرب انتهت لماذا"),
    ("نيبال.. تحطم", "نيبال تحطم"),
    # hashtags as Al Arabiya writes them
    ("#عاصي_الحلاني", "عاصي الحلاني"),
    # bidi controls, ZWNJ, ZWJ, BOM
    ("\u200fمصر\u200e \u202bاليوم\u202c", "مصر اليوم"),
    ("می\u200cخواهم", "ميخواهم"),
    ("\ufeffخبر", "خبر"),
    # Persian letters folded to Arabic
    ("کرمانشاه ایران", "كرمانشاه ايران"),
    # presentation forms (NFKC)
    ("ﻻ", "لا"),
    # Latin case-folded, punctuation dropped, decimals kept
    ("Trump's CIA, Straße 3.5%", "trump s cia strasse 3.5"),
    ("", ""),
]


@pytest.mark.parametrize("text,expected", NORMALISE)
def test_normalize_for_matching(text, expected):
    assert normalize_for_matching(text) == expected


@pytest.mark.parametrize("text", [t for t, _ in NORMALISE])
def test_normalize_is_idempotent(text):
    once = normalize_for_matching(text)
    assert normalize_for_matching(once) == once


STEMS = [
    # clitic prefixes: article and its combinations
    ("الوزير", "وزير"),
    ("والوزير", "وزير"),
    ("بالوزير", "وزير"),
    ("للوزير", "وزير"),
    ("فالوزير", "وزير"),
    ("كالوزير", "وزير"),
    ("وبالمستشفيات", "مستشفي"),
    # conjunction و / ف on longer words
    ("وتحطمت", "تحطمت"),
    ("فقتلوا", "قتلوا"),
    # short words keep a leading و (part of the word)
    ("وزير", "وزير"),
    ("وطن", "وطن"),
    # light suffixes: plural, dual, possessive
    ("مهاجرين", "مهاجر"),
    ("الطائرات", "طاءر"),
    ("حكومتها", "حكومت"),
    # non-Arabic tokens untouched
    ("2018", "2018"),
    ("trump", "trump"),
]


@pytest.mark.parametrize("word,stem", STEMS)
def test_light_stem(word, stem):
    assert light_stem(normalize_for_matching(word)) == stem


def test_spelling_variants_meet():
    # the same words as two outlets spell them
    pairs = [
        ("السعودية", "السعوديه"),
        ("مسؤولون", "مسئولون"),
        ("إيران", "ايران"),
        ("مصطفى", "مصطفي"),
        ("٤٠ قتيلا", "40 قتيلاً"),
        ("وزارة الخارجية", "الوزارة الخارجيّة"),
    ]
    for a, b in pairs:
        assert tokens(a) == tokens(b), (a, b)


def test_tokens_drop_stop_words_and_short_tokens():
    assert tokens("قال إن الرئيس في باريس") == ["رءيس", "باريس"]
    assert tokens("و في من") == []
    assert "في" in STOP_WORDS and "قال" in STOP_WORDS


def test_tokens_keep_numbers_and_latin():
    assert tokens("مقتل 49 شخصا في تحطم طائرة US-Bangla") == [
        "مقتل", "49", "شخصا", "تحطم", "طاءر", "us", "bangla"]


def test_display_text_untouched():
    title = "نيبال: مقتل العشرات في تحطم طائرة"
    tokens(title)
    assert title == "نيبال: مقتل العشرات في تحطم طائرة"
