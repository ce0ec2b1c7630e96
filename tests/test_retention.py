"""Retention trims grouping state with the items (real Redis; conftest's unique key prefix).

The stories here are wire copies (identical title and summary from two outlets): grouped by
the exact-duplicate rule, so the test does not depend on similarity thresholds.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aggregator.group import Grouper, LockBusy
from aggregator.store import Store
from aggregator.types import Item, Source, SourceState

UTC = timezone.utc
NOW = datetime(2018, 4, 30, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)


def item(item_id: str, source: str, title: str, published: datetime, first_seen: datetime) -> Item:
    summary = f"{title}، بحسب ما أعلنه المتحدث الرسمي في بيان صدر اليوم."
    return Item(id=item_id, source=source, url=f"https://{source}.example/{item_id}", guid=None,
                title=title, summary_html=summary, summary_text=summary, published=published,
                first_seen=first_seen, updated=first_seen, content_hash=item_id)


def stored_and_grouped(client, keys, items) -> tuple[Store, Grouper]:
    store, grouper = Store(client, keys), Grouper(client, keys)
    for it in items:
        store.save_poll(Source(id=it.source, url=f"https://{it.source}.example/feed", title=it.source),
                        [it], SourceState(), it.first_seen)
    while grouper.process_pending(NOW):
        pass
    return store, grouper


# story A: an old report and a copy seen recently (A keeps one member); story B: one old
# report (B goes, and its topic with it); story C: fresh.
A1 = item("a1", "skynews", "انقطاع الكهرباء عن مدينة البصرة لساعات", OLD, OLD)
A2 = item("a2", "bbc", "انقطاع الكهرباء عن مدينة البصرة لساعات", OLD + timedelta(hours=1),
          NOW - timedelta(days=1))
B1 = item("b1", "cnn", "افتتاح معرض الكتاب الدولي في الرياض", OLD, OLD)
C1 = item("c1", "france24", "ارتفاع أسعار النفط مع تراجع المخزون الأميركي", NOW, NOW)


def test_trim_takes_items_out_of_their_stories_and_drops_empty_stories(redis_client, keys):
    store, grouper = stored_and_grouped(redis_client, keys, [A1, A2, B1, C1])
    story = {i: grouper.story_of(i) for i in ("a1", "a2", "b1", "c1")}
    assert story["a1"] == story["a2"] and len(set(story.values())) == 3
    [b] = grouper.get_stories([story["b1"]])
    assert redis_client.exists(keys.group_topic(b.topic))

    assert store.trim(NOW, timedelta(days=30), 1000,
                      before_drop=lambda ids: grouper.forget(ids, now=NOW)) == 2

    assert redis_client.hmget(keys.group_is, ["a1", "b1"]) == [None, None]
    [a] = grouper.get_stories([story["a1"]])
    assert a.items == ("a2",) and a.lead_item == "a2"  # the earliest remaining member leads
    assert a.updated == NOW  # it changed: feeds' Last-Modified moves
    assert a.first_published == A2.published
    assert grouper.get_stories([story["b1"]]) == []
    assert not redis_client.exists(keys.group_story_items(story["b1"]))
    assert redis_client.zscore(keys.group_story_timeline, story["b1"]) is None
    assert not redis_client.exists(keys.group_topic(b.topic))
    assert not redis_client.exists(keys.group_topic_stories(b.topic))
    assert [s.items for s in grouper.get_stories([story["c1"]])] == [("c1",)]
    assert set(redis_client.zrange(keys.timeline, 0, -1)) == {"a2", "c1"}


def test_trim_keeps_the_items_while_a_grouper_holds_the_lock(redis_client, keys):
    store, grouper = stored_and_grouped(redis_client, keys, [B1, C1])
    redis_client.set(keys.group_lock, "another-grouper", px=60_000)
    with pytest.raises(LockBusy):
        store.trim(NOW, timedelta(days=30), 1000,
                   before_drop=lambda ids: grouper.forget(ids, wait=0.5))
    assert redis_client.exists(keys.item("b1")) and grouper.story_of("b1")
    redis_client.delete(keys.group_lock)
    assert store.trim(NOW, timedelta(days=30), 1000, before_drop=grouper.forget) == 1
    assert grouper.story_of("b1") is None and not redis_client.exists(keys.item("b1"))


def test_a_pass_cut_short_after_the_stories_is_finished_by_the_next_even_with_raised_limits(
        redis_client, keys):
    store, grouper = stored_and_grouped(redis_client, keys, [B1, C1])

    class Killed(BaseException):
        pass

    def forget_then_die(ids):
        grouper.forget(ids)
        raise Killed  # the worker dies between the grouping step and the delete

    with pytest.raises(Killed):
        store.trim(NOW, timedelta(days=30), 1000, before_drop=forget_then_die)
    assert redis_client.exists(keys.item("b1")) and grouper.story_of("b1") is None

    # the operator raised retention meanwhile: b1 is no longer due, but it has already
    # left its story, so it must not stay stored as an item of no story
    assert store.trim(NOW, timedelta(days=3650), 1000, before_drop=grouper.forget) == 1
    assert not redis_client.exists(keys.item("b1"))
    assert redis_client.zscore(keys.timeline, "b1") is None
    assert not redis_client.exists(keys.retiring)
    assert grouper.story_of("c1") and redis_client.exists(keys.item("c1"))


def test_an_item_dropped_while_its_feed_still_lists_it_is_not_stored_again(redis_client, keys):
    store, grouper = stored_and_grouped(redis_client, keys, [B1, C1])
    assert store.trim(NOW, timedelta(days=30), 1000, before_drop=grouper.forget) == 1
    source = Source(id="cnn", url="https://cnn.example/feed", title="cnn")
    again = store.save_poll(source, [B1], SourceState(), NOW + timedelta(minutes=10))
    assert again.new == () and not redis_client.exists(keys.item("b1"))
    assert redis_client.zscore(keys.timeline, "b1") is None
    assert redis_client.zscore(keys.group_pending, "b1") is None

    # a count cap trims c1 too; the next pass a retention age later forgets both tombstones
    assert store.trim(NOW, timedelta(days=30), 0, before_drop=grouper.forget) == 1
    later = NOW + timedelta(days=31)
    assert store.trim(later, timedelta(days=30), 1000, before_drop=grouper.forget) == 0
    assert redis_client.zcard(keys.trimmed) == 0
    assert store.save_poll(source, [B1], SourceState(), later).new == ("b1",)
