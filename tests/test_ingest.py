"""The ingest spine end to end: real HTTP on 127.0.0.1, real Redis, real ANT items."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from aggregator.fetch import Fetcher
from aggregator.normalize import canonical_url, clean_text
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.types import Outcome, Source
from aggregator.update import Pipeline, update_source
from feedserver import Fault, Feed, FeedServer, ant_items

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def server():
    s = FeedServer().start()
    yield s
    s.stop()


@pytest.fixture
def pipe(redis_client, keys):
    fetcher = Fetcher(Settings(allow_private_networks=True, fetch_timeout=3.0))
    yield Pipeline(Store(redis_client, keys), fetcher, rng=random.Random(0))
    fetcher.close()


def source_for(server, path, sid, **kw):
    return Source(id=sid, url=server.url(path), title=sid, **kw)


def stored(pipe, source_id=None):
    ids = [i for i, _ in pipe.store.timeline_ids(
        pipe.store.keys.source_timeline(source_id) if source_id else None, limit=10_000)]
    return {it.id: it for it in pipe.store.get_items(ids)}


def test_first_poll_stores_every_item_once_then_304_then_only_new_items(server, pipe):
    items = ant_items("BBC")
    server.feeds["/bbc.xml"] = Feed("BBC", items[:10])
    src = source_for(server, "/bbc.xml", "bbc", tags=("broadcaster",), country="GB")

    first = update_source(src, pipe, NOW)
    assert first.outcome is Outcome.OK and first.new == 10
    got = stored(pipe, "bbc")
    assert len(got) == 10
    assert {it.title for it in got.values()} == {clean_text(d["title"]) for d in items[:10]}
    assert {it.url for it in got.values()} == {canonical_url(d["url"]) for d in items[:10]}
    k = pipe.store.keys
    assert pipe.store.r.zcard(k.tag_timeline("broadcaster")) == 10
    assert pipe.store.r.zcard(k.country_timeline("GB")) == 10

    second = update_source(src, pipe, NOW + timedelta(minutes=10))
    assert second.outcome is Outcome.NOT_MODIFIED and second.new == 0
    hit = server.hits("/bbc.xml")[-1]
    assert hit["status"] == 304 and hit["inm"]

    server.feeds["/bbc.xml"].items = items[:13]
    third = update_source(src, pipe, NOW + timedelta(minutes=20))
    assert third.outcome is Outcome.OK and third.new == 3 and third.updated == 0
    assert len(stored(pipe)) == 13


def test_retitled_item_updates_in_place(server, pipe):
    items = [dict(d) for d in ant_items("skynews")[:5]]
    server.feeds["/sky.xml"] = Feed("Sky", items)
    src = source_for(server, "/sky.xml", "sky")
    update_source(src, pipe, NOW)
    before = stored(pipe)
    target = items[2]
    old = next(it for it in before.values() if it.title == target["title"])
    target["title"] = "محدث: " + target["title"]

    report = update_source(src, pipe, NOW + timedelta(minutes=10))
    after = stored(pipe)
    assert report.new == 0 and report.updated == 1
    assert set(after) == set(before)
    new = after[old.id]
    assert new.title == target["title"]
    assert new.first_seen == old.first_seen and new.published == old.published
    assert new.updated == NOW + timedelta(minutes=10)


def test_windows_1256_feed_yields_correct_arabic(server, pipe):
    items = ant_items("CNN")[:6]
    server.feeds["/cnn.xml"] = Feed("CNN", items, encoding="windows-1256")
    assert "windows-1256" in server.feeds["/cnn.xml"].body()[:60].decode("ascii")
    update_source(source_for(server, "/cnn.xml", "cnn"), pipe, NOW)
    assert sorted(it.title for it in stored(pipe).values()) == sorted(clean_text(d["title"]) for d in items)


def test_duplicate_guids_and_repolls_never_duplicate(server, pipe):
    items = ant_items("france24")[:6]
    server.feeds["/f24.xml"] = Feed("F24", items + items[:2], conditional=False)
    src = source_for(server, "/f24.xml", "f24")
    for minutes in (0, 10, 20):
        update_source(src, pipe, NOW + timedelta(minutes=minutes))
    assert len(stored(pipe)) == 6
    assert pipe.store.count_items() == 6


def test_failing_source_backs_off_on_schedule_and_recovers(server, pipe):
    server.feeds["/flaky.xml"] = Feed("flaky", ant_items("skynews")[:4])
    server.feeds["/flaky.xml"].faults.extend(Fault(500) for _ in range(4))
    src = source_for(server, "/flaky.xml", "flaky", interval=600)
    now, delays = NOW, []
    for _ in range(4):
        report = update_source(src, pipe, now)
        assert report.outcome is Outcome.HTTP_5XX
        delays.append((report.next_poll - now).total_seconds())
        now = report.next_poll
    for n, delay in enumerate(delays):
        assert delay == pytest.approx(600 * 2 ** n, rel=0.11)
    state = pipe.store.load_state("flaky")
    assert state.consecutive_failures == 4 and state.errors == 4
    assert state.failing_since == NOW and state.last_http_status == 500

    report = update_source(src, pipe, now)
    assert report.outcome is Outcome.OK and report.new == 4
    state = pipe.store.load_state("flaky")
    assert state.consecutive_failures == 0 and state.failing_since is None
    assert (state.next_poll - now).total_seconds() == pytest.approx(600, rel=0.11)


def test_retry_after_is_honoured(server, pipe):
    server.feeds["/busy.xml"] = Feed("busy", ant_items("BBC")[:3])
    server.feeds["/busy.xml"].faults.append(Fault(429, {"Retry-After": "7200"}))
    src = source_for(server, "/busy.xml", "busy", interval=600)
    report = update_source(src, pipe, NOW)
    assert report.outcome is Outcome.RATE_LIMITED
    assert report.next_poll >= NOW + timedelta(seconds=7200)
    assert pipe.store.load_state("busy").retry_after_until == NOW + timedelta(seconds=7200)


def test_gone_disables_the_source(server, pipe):
    server.feeds["/gone.xml"] = Feed("gone", [])
    server.feeds["/gone.xml"].faults.append(Fault(410))
    report = update_source(source_for(server, "/gone.xml", "gone"), pipe, NOW)
    assert report.outcome is Outcome.GONE and report.next_poll is None
    assert "410" in pipe.store.load_state("gone").disabled_reason


def test_html_page_is_not_a_feed(server, pipe):
    server.feeds["/page.xml"] = Feed("page", [])
    server.feeds["/page.xml"].faults.append(
        Fault(200, {"Content-Type": "text/html"}, body=b"<html><body><p>hello</p></body></html>"))
    report = update_source(source_for(server, "/page.xml", "page"), pipe, NOW)
    assert report.outcome is Outcome.NOT_A_FEED
    assert pipe.store.load_state("page").last_status == "not-a-feed"
