"""aggregator.search: the query language the pages and the feeds share."""
from __future__ import annotations

import pytest

from aggregator.arabic import normalize_for_matching
from aggregator.search import Query


@pytest.mark.parametrize("q, text, hit", [
    ("عراق", "والعراق يعلن نتائج الانتخابات", True),  # clitic و + article
    ("العراق", "وفد للعراقيين في بغداد", True),  # a typed article is one of the prefixes
    ("السعودية", "بالسعودية", True),
    ("وزير", "قال الوزير", True),
    ("روبي", "الاتحاد الأوروبي يجتمع", False),  # not inside a word
    ("زير", "قال الوزير", False),
    ("18", "في عام 2018", False),
    ("2018", "في عام ٢٠١٨", True),  # Arabic-Indic digits fold to the same number
    ("إنفجار", "انفجار قرب موكب", True),  # hamza forms
    ("مُوكِب", "انفجار قرب موكب", True),  # diacritics
    ("موكب انفجار", "انفجار قرب موكب", True),  # every word, in any order
    ("موكب طائرة", "انفجار قرب موكب", False),
    ("الله", "رامي الحمد الله", True),
    ("الله", "قال له", False),  # a short word keeps its article
    ("brexit", "BREXIT talks resume", True),
    ("rex", "Brexit talks", False),
    ("exit", "Brexit talks", False),
])
def test_every_query_word_starts_a_word_of_the_text(q, text, hit):
    query = Query.parse(q)
    assert query.has_words
    assert query.matches_text(normalize_for_matching(text)) is hit


@pytest.mark.parametrize("q", ["...", "«»", "؟!", "—"])
def test_a_query_without_words_matches_nothing(q):
    query = Query.parse(q)
    assert not query.has_words
    assert not query.matches_text("اي نص")
