"""Matching records: the terms grouping compares, made at normalise time, kept beside the
pending item, read by the grouper instead of tokenising (aggregator/matching.py)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from aggregator import arabic, matching
from aggregator.group import Grouper
from aggregator.normalize import normalize_entry
from aggregator.store import Store
from aggregator.types import EntryData, Source, SourceState

from test_group import CRASH, OTHER, save

UTC = timezone.utc

TEXTS = [
    (CRASH[1].title, CRASH[1].summary_text),
    ("وبالتالي فإن الوزارة والحكومة ستُعلنان القرار", ""),  # clitics, tashkeel, no summary
    ("", "نص بلا عنوان فيه أرقام ٢٠١٨ و3.5 بالمئة"),  # Arabic-Indic digits, no title
    ("Putin and Erdogan discuss Idlib", "The two leaders spoke by phone on Monday " * 6),
    ("", ""),
]


@pytest.mark.parametrize("title,summary", TEXTS)
def test_a_record_gives_back_what_tokenising_gives(title, summary):
    title_terms, summary_terms, text_key = matching.text_terms(title, summary)
    got = matching.terms(matching.record(title, summary))
    assert got == (title_terms, summary_terms[: matching.LEAD_TOKENS], text_key,
                   matching.title_labels(title))
    # the copies of a report (one record) share one unpacked result
    assert matching.terms(matching.record(title, summary)) is got
    # a grouper that reads fewer lead tokens takes the first of them
    assert matching.terms(matching.record(title, summary), lead_tokens=5)[1] == summary_terms[:5]


def test_a_record_made_otherwise_is_not_used():
    title, summary = TEXTS[0]
    rec = matching.record(title, summary)
    assert matching.terms(rec) is not None
    assert matching.terms(rec, lead_tokens=matching.LEAD_TOKENS + 1) is None  # it holds 20
    assert matching.terms(rec, dup_min_tokens=matching.DUP_MIN_TOKENS + 1) is None
    for broken in (None, "", "junk", rec.rsplit(matching.SEP, 1)[0]):
        assert matching.terms(broken) is None
    try:
        arabic.set_stemmer("none")
        assert matching.terms(rec) is None  # made with the light stemmer
        assert matching.terms(matching.record(title, summary))[0] == tuple(arabic.tokens(title))
    finally:
        arabic.set_stemmer("light")


def test_normalise_makes_the_record_of_the_item_text():
    source = Source(id="bbc", url="https://feeds.bbci.co.uk/arabic/rss.xml", title="BBC")
    now = datetime(2018, 3, 12, 10, tzinfo=UTC)
    entry = EntryData(guid="g1", link="https://www.bbc.com/arabic/x", title=" <b>تحطم</b> طائرة ركاب في نيبال ",
                      summary="<p>قتل 49 شخصا على الأقل في تحطم طائرة في مطار كاتمندو.</p>", content=None,
                      published="Mon, 12 Mar 2018 09:00:00 GMT", updated=None, author=None)
    item = normalize_entry(source, entry, now, now)
    assert item.match_record == matching.record(item.title, item.summary_text)
    assert matching.terms(item.match_record)[0] == tuple(arabic.tokens("تحطم طائرة ركاب في نيبال"))


def test_the_store_keeps_a_new_items_record_until_the_grouper_places_it(redis_client, keys):
    store = Store(redis_client, keys)
    src = Source(id="skynews", url="https://sky.example/feed", title="Sky")
    a = replace(CRASH[0], match_record=matching.record(CRASH[0].title, CRASH[0].summary_text))
    b = CRASH[2]  # made without a record (by hand, or stored before records existed)
    store.save_poll(src, [a, b], SourceState(), a.published)
    assert redis_client.hgetall(keys.group_match) == {a.id: a.match_record}
    Grouper(redis_client, keys).process_pending(a.published + timedelta(hours=5))
    assert redis_client.hlen(keys.group_match) == 0 and redis_client.zcard(keys.group_pending) == 0
    # a re-poll of a known item (changed or not) queues nothing again
    store.save_poll(src, [a, replace(b, title=b.title + "!", content_hash="changed")], SourceState(),
                    a.published)
    assert redis_client.hlen(keys.group_match) == 0


def test_the_grouper_takes_the_terms_from_the_record(redis_client, keys):
    # An item whose record holds another text's terms is matched by the record: OTHER (gold
    # prices) carrying the crash report's record joins the crash story as its copy; with a
    # record made by another stemmer the grouper tokenises OTHER's own text instead.
    crash = CRASH[1]
    save(redis_client, keys, [crash])
    grouper = Grouper(redis_client, keys)
    grouper.process_pending(crash.published)
    story = grouper.story_of(crash.id)
    borrowed = replace(OTHER, id="cnn-a", match_record=matching.record(crash.title, crash.summary_text))
    try:
        arabic.set_stemmer("none")
        stale = matching.record(crash.title, crash.summary_text)
    finally:
        arabic.set_stemmer("light")
    own = replace(OTHER, id="cnn-b", match_record=stale)
    save(redis_client, keys, [borrowed, own])
    grouper.process_pending(OTHER.published)
    assert grouper.story_of("cnn-a") == story
    assert grouper.story_of("cnn-b") not in (None, story)
