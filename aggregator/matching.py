"""The matching terms of an item's text: what grouping compares, computed once per item.

normalise computes them (`record`) in the feed-reading processes, which run in parallel;
the store keeps the record beside the pending item (keys.group_match) until the grouper
has placed the item; the grouper, one process deciding items in order, then splits a
string instead of tokenising the text (a sixth of its time per item in
bench/grouping_cost.py). A record made with another stemmer or other limits than the
grouper's is ignored (`terms` returns None) and the grouper tokenises the text itself, as
it does for items stored before records existed.
"""
from __future__ import annotations

import hashlib
import re
import sys

from . import arabic

# The grouping's defaults (group.Params.lead_tokens, .text_dup_min_tokens; the reasons for
# their values are given there). A record holds the first LEAD_TOKENS summary tokens.
LEAD_TOKENS = 20
DUP_MIN_TOKENS = 6

SEP = "\x1f"

Labels = tuple[tuple[str, str, int], ...]  # (stem, surface word, position) of a title
# title terms, summary terms, wire-copy key, title labels
Terms = tuple[tuple[str, ...], tuple[str, ...], "str | None", Labels]


class Memo(dict):
    """Results of a pure function of text that depend on the stemmer (and on `tag`): emptied
    when either changes, and when it holds `limit` entries (what repeats, repeats soon: the
    copies of a report arrive in one poll pass), so it stays a few MB."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.tag: tuple | None = None

    def fresh(self, tag: object = None) -> "Memo":
        """This memo, emptied first if its entries were made otherwise or it is full."""
        tag = (arabic.stemmer_name(), tag)
        if tag != self.tag or len(self) >= self.limit:
            self.clear()
            self.tag = tag
        return self


def text_terms(title: str, summary: str, dup_min_tokens: int = DUP_MIN_TOKENS) -> Terms:
    """Title tokens, summary tokens and the wire-copy key of one text; an identical text
    (the same report in several feeds of an outlet, reposts, wire copies) is tokenised
    once while it is in _TEXT_TERMS."""
    cache = _TEXT_TERMS.fresh(dup_min_tokens)
    key = (title, summary)
    hit = cache.get(key)
    if hit is not None:
        return hit
    title_terms = tuple(arabic.tokens(title))
    summary_terms = tuple(arabic.tokens(summary))
    text_key = None
    if len(title_terms) + len(summary_terms) >= dup_min_tokens:
        # wire copy: the same words in the same order once spelling, stop words and
        # clitics are normalised away
        text = " ".join(title_terms) + "|" + " ".join(summary_terms)
        text_key = hashlib.sha1(text.encode()).hexdigest()[:16]
    hit = cache[key] = (title_terms, summary_terms, text_key)
    return hit


_TEXT_TERMS = Memo(4096)  # (title, summary) -> text_terms' result


# Letters, digits and marks of the Arabic block, without its punctuation (، ؛ ؟ ٪ ٫ ٬ ٭ ۔):
# a label word is shown as it is found, and "صلاح؟" is not a word.
_WORD = re.compile(r"(?:(?![\u060c\u061b\u061f\u066a-\u066d\u06d4])[\w\u0600-\u06ff])+")


def label_terms(title: str) -> list[tuple[str, str]]:
    """(stem, surface word) pairs of a title, stop words out, in order."""
    cache = _LABEL_STEMS.fresh()
    out = []
    for w in _WORD.findall(title.replace("_", " ")):
        st = cache.get(w)
        if st is None:
            ts = arabic.tokens(w)
            st = cache[w] = ts[0] if ts and not ts[0].isdigit() and len(ts[0]) > 1 else ""
        if st:
            out.append((st, w))
    return out


_LABEL_STEMS = Memo(100_000)  # word -> its label stem ("" when not a label word)


def title_labels(title: str) -> Labels:
    """(stem, surface word, position) of a title's label terms (a story's label is made
    of them), each stem once; cached per title like text_terms (copies of a report repeat
    its title)."""
    cache = _TITLE_LABELS.fresh()
    hit = cache.get(title)
    if hit is None:
        out, seen = [], set()
        for pos, (stem, surface) in enumerate(label_terms(title)):
            if stem not in seen:
                seen.add(stem)
                out.append((stem, surface, pos))
        hit = cache[title] = tuple(out)
    return hit


_TITLE_LABELS = Memo(4096)  # title -> title_labels' result


def _tag() -> str:
    """What a record's terms depend on besides the text (m<n>: this module's rules)."""
    return f"m1/{arabic.stemmer_name()}/{DUP_MIN_TOKENS}/{LEAD_TOKENS}"


def record(title: str, summary: str) -> str:
    """The matching terms of (title, summary text) as one string, for the store; made
    once per text while it is in _RECORDS (copies of a report arrive together)."""
    cache = _RECORDS.fresh()
    key = (title, summary)
    rec = cache.get(key)
    if rec is None:
        title_terms, summary_terms, text_key = text_terms(title, summary)
        labels = " ".join(f"{stem} {surface} {pos}" for stem, surface, pos in title_labels(title))
        rec = cache[key] = SEP.join((_tag(), " ".join(title_terms), " ".join(summary_terms[:LEAD_TOKENS]),
                                     text_key or "", labels))
    return rec


_RECORDS = Memo(4096)  # (title, summary) -> record()


def terms(rec: str | None, lead_tokens: int = LEAD_TOKENS,
          dup_min_tokens: int = DUP_MIN_TOKENS) -> Terms | None:
    """(title terms, first `lead_tokens` summary terms, wire-copy key, title labels) from
    a record, or None when there is none or it was made otherwise than these settings
    need. The copies of a report share one record, and get the same tuples back while it
    is in _TERMS."""
    if not rec or lead_tokens > LEAD_TOKENS or dup_min_tokens != DUP_MIN_TOKENS:
        return None
    cache = _TERMS.fresh(lead_tokens)
    hit = cache.get(rec, _MISSING)
    if hit is _MISSING:
        hit = cache[rec] = _unpack(rec, lead_tokens)
    return hit


def _unpack(rec: str, lead_tokens: int) -> Terms | None:
    parts = rec.split(SEP)
    if len(parts) != 5 or parts[0] != _tag():
        return None
    intern = sys.intern  # one string per term across the grouper's working set
    lab = parts[4].split()
    return (tuple(map(intern, parts[1].split())), tuple(map(intern, parts[2].split()))[:lead_tokens],
            parts[3] or None, tuple(zip(map(intern, lab[0::3]), lab[1::3], map(int, lab[2::3]))))


_TERMS = Memo(4096)  # record -> terms() (None for a record made otherwise)
_MISSING = object()
