"""Real consumers over HTTP on 127.0.0.1: feedparser and newsboat (Debian package, run
headless) read the same entries — count, titles, links, Arabic intact — from our RSS and
Atom in both modes; the JSON Feed validates against the JSON Feed 1.1 schema."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import urllib.request

import feedparser
import pytest

from aggregator.store import Store
from aggregator.syndicate import to_uri
from syndicate_ant import (GoldGrouper, LiveServer, gold_stories, jsonfeed_validator, load_rows,
                           make_app, save_all)

CASES = [(fmt, mode) for fmt in ("rss", "atom") for mode in ("stories", "articles")]


@pytest.fixture
def live(redis_client, keys):
    rows = load_rows()
    stories, topics = gold_stories(rows)
    save_all(Store(redis_client, keys), rows)
    server = LiveServer(make_app(redis_client, keys, GoldGrouper(stories, topics)))
    server.rows, server.stories, server.topics = rows, stories, topics
    yield server
    server.close()


def expected(live, mode):
    """(title, link) of every entry, from the fixture itself (not from our output)."""
    items = {r.item.id: r.item for r in live.rows}
    if mode == "articles":
        return sorted((r.item.title, to_uri(r.item.url)) for r in live.rows)
    return sorted((items[s.lead_item].title, f"{live.url}/stories/{s.id}")
                  for s in live.stories.values())


def feed_url(live, fmt, mode):
    return f"{live.url}/feeds/all.{fmt}?mode={mode}&limit=200"


@pytest.mark.parametrize("fmt,mode", CASES)
def test_feedparser_reads_every_entry(live, fmt, mode):
    d = feedparser.parse(feed_url(live, fmt, mode))
    assert d.bozo == 0, d.get("bozo_exception")
    assert d.status == 200
    assert d.version == {"rss": "rss20", "atom": "atom10"}[fmt]
    assert d.feed.language == "ar"
    got = sorted((e.title, e.link) for e in d.entries)
    assert got == expected(live, mode)
    assert all(e.id.startswith("tag:127.0.0.1,2026:") for e in d.entries)
    if mode == "stories":
        # category = topic, when the topic has other stories too
        topic_of = {f"{live.url}/stories/{s.id}": live.topics[s.topic]
                    for s in live.stories.values()}
        for e in d.entries:
            t = topic_of[e.link]
            assert [x.get("label") or x.term for x in e.get("tags", [])] == (
                [t.label] if t.is_thread else []), e.link
    # Arabic intact: a known title, byte for byte
    assert "انفجار يستهدف موكب رئيس الوزراء الفلسطيني في غزة" in {t for t, _ in got}


def _newsboat(tmp_path, urls):
    if not shutil.which("newsboat"):
        pytest.fail("newsboat is not installed (Debian package 'newsboat'; .ci/run installs it)")
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "urls").write_text("\n".join(urls) + "\n", encoding="utf-8")
    (tmp_path / "config").write_text("", encoding="utf-8")
    cache = tmp_path / "cache.db"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run(
        ["newsboat", "-u", str(tmp_path / "urls"), "-c", str(cache),
         "-C", str(tmp_path / "config"), "-x", "reload"],
        env=env, capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    with sqlite3.connect(cache) as db:
        feeds = dict(db.execute("SELECT rssurl, title FROM rss_feed"))
        items = db.execute("SELECT feedurl, title, url, guid FROM rss_item").fetchall()
    return feeds, items


@pytest.mark.parametrize("fmt,mode", CASES)
def test_newsboat_reads_the_same_entries_as_feedparser(live, tmp_path, fmt, mode):
    # One cache per feed: newsboat keys items on the guid across all feeds, and our RSS
    # and Atom outputs rightly share entry ids.
    url = feed_url(live, fmt, mode)
    feeds, items = _newsboat(tmp_path, [url])
    assert feeds == {url: "أخبار الشرق الأوسط"}
    nb = sorted((t, u) for f, t, u, _g in items if f == url)
    assert nb == expected(live, mode)
    fp = feedparser.parse(url)
    assert nb == sorted((e.title, e.link) for e in fp.entries)
    assert {g for f, _t, _u, g in items if f == url} == {e.id for e in fp.entries}


@pytest.mark.parametrize("path", ["/feeds/all.json", "/feeds/all.json?mode=articles&limit=200",
                                  "/feeds/sources/alarabiya.json",
                                  "/feeds/topics/skripal-poisoning.json"])
def test_json_feed_validates_against_the_schema(live, path):
    validator = jsonfeed_validator()
    with urllib.request.urlopen(live.url + path, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/feed+json; charset=utf-8"
        doc = json.loads(resp.read())
    errors = list(validator.iter_errors(doc))
    assert not errors, [e.message for e in errors[:3]]
    assert doc["items"]
    for it in doc["items"]:
        assert it["url"].isascii()
        assert it.get("external_url", "x").isascii()
