"""Differential test: the lxml fast path gives the same items as feedparser.

This is what licenses the fast path: over every fixture feed (the five outlets' real
styles, chaos variants, a Persian feed) and feeds rendered from real ANT items in UTF-8
and windows-1256, the normalised items must be identical, field by field.
"""
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aggregator.fastparse import Unsupported, fast_parse
from aggregator.normalize import normalize_feed
from aggregator.parse import parse_feed
from aggregator.types import Source
from feedserver import ant_items, render_rss

FEEDS = Path(__file__).parent / "data" / "feeds"
NOW = datetime(2018, 3, 13, 12, tzinfo=timezone.utc)
SOURCE = Source(id="s", url="http://127.0.0.1:1/feed.xml", title="s")
URL = "http://127.0.0.1:1/feeds/x.xml"
OUTLETS = ["alarabia", "bbc", "cnn", "france24", "skynews"]


def corpus():
    for path in sorted(FEEDS.glob("*.xml")):
        headers_path = path.with_suffix(".headers.json")
        headers = json.loads(headers_path.read_text()) if headers_path.exists() else {}
        yield path.stem, path.read_bytes(), headers
    for outlet in ["skynews", "alarabia", "france24", "BBC", "CNN"]:
        for encoding in ("utf-8", "windows-1256"):
            body = render_rss(outlet, ant_items(outlet), encoding)
            yield f"ant-{outlet}-{encoding}", body, {
                "content-type": f"application/rss+xml; charset={encoding}"}


CORPUS = list(corpus())


@pytest.mark.parametrize("name, body, headers", CORPUS, ids=[c[0] for c in CORPUS])
def test_fast_path_gives_the_same_items_as_feedparser(name, body, headers):
    try:
        slow = parse_feed(body, headers, URL, allow_fast=False)
    except Exception as e:
        with pytest.raises(type(e)):
            parse_feed(body, headers, URL)
        return
    fast = parse_feed(body, headers, URL)
    a = normalize_feed(SOURCE, slow, NOW, NOW)
    b = normalize_feed(SOURCE, fast, NOW, NOW)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x == y
    assert (slow.title, slow.link) == (fast.title, fast.link)


@pytest.mark.parametrize("outlet", OUTLETS)
def test_fast_path_is_taken_for_every_outlet_style(outlet):
    """Guards the benchmark's premise: clean outlet feeds do not fall back."""
    body = (FEEDS / f"{outlet}.xml").read_bytes()
    feed = fast_parse(body, URL)
    assert len(feed.entries) == 10 and all(e.title for e in feed.entries)


def test_fast_path_declines_what_it_does_not_handle():
    with pytest.raises(Unsupported):
        fast_parse(b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>', URL)
    with pytest.raises(Unsupported):
        fast_parse(b'<rss version="2.0"><channel><item><description>&lt;a href="/x"&gt;'
                   b'y&lt;/a&gt;</description></item></channel></rss>', URL)
