"""Search over stored reports, as the pages and the feeds both do it.

Both sides go through the grouping's matching normalisation (aggregator.arabic), so a
search finds the spellings the grouping treats as one (hamza forms, ى/ي, ة/ه, digits,
diacritics). Every word of the query must begin a word of the report's title or summary,
after an optional clitic prefix: عراق finds العراق, والعراق, للعراقيين; روبي does not find
أوروبي (a plain substring search did), and 18 does not find 2018.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .arabic import normalize_for_matching
from .types import Item

# Conjunction (و ف), then preposition (ب ك ل), then the article (ال, or ل where لل
# contracts it). Each is optional; together they cover وبالـ, فللـ, كالـ …
_CLITICS = "[وف]?[بكل]?(?:ال|ل)?"
_ARABIC_LETTER = re.compile(r"[\u0621-\u064a]")


def _term_pattern(term: str) -> str:
    if _ARABIC_LETTER.match(term):
        # a typed article is one of the prefixes: العراق also finds للعراق
        if term.startswith("ال") and len(term) >= 5:
            term = term[2:]
        return f"(?:^| ){_CLITICS}{re.escape(term)}"
    return f"(?:^| ){re.escape(term)}"


@dataclass(frozen=True)
class Query:
    text: str  # as typed
    patterns: tuple[re.Pattern, ...]  # one per word; all must match

    @classmethod
    def parse(cls, text: str) -> "Query":
        terms = dict.fromkeys(normalize_for_matching(text).split())
        return cls(text, tuple(re.compile(_term_pattern(t)) for t in terms))

    @property
    def has_words(self) -> bool:
        """False for a query of punctuation or symbols only: it can match nothing, and
        must not be mistaken for no query (which matches everything)."""
        return bool(self.patterns)

    def matches_text(self, normalized: str) -> bool:
        """`normalized`: text already through normalize_for_matching."""
        return bool(self.patterns) and all(p.search(normalized) for p in self.patterns)

    def matches(self, item: Item) -> bool:
        return self.matches_text(normalize_for_matching(f"{item.title} {item.summary_text}"))
