"""The store against a real Redis: upsert semantics, indexes, retention, state, embedded."""
import json
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import redis

from aggregator.embedded import ensure_server, stop_server
from aggregator.keys import Keys
from aggregator.store import (Store, item_from_hash, item_to_hash, prepare_items, state_from_hash,
                              state_to_hash)
from aggregator.types import Item, Source, SourceState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
SRC = Source(id="sky", url="https://example.org/rss", title="سكاي", tags=("gulf", "tv"),
             country="AE")


def item(n, title=None, published=None, first_seen=NOW):
    title = title or f"عنوان الخبر رقم {n}"
    return Item(id=f"id{n}", source="sky", url=f"https://example.org/{n}", guid=str(n),
                title=title, summary_html=f"<p>{title}</p>", summary_text=title,
                published=published or NOW - timedelta(minutes=n), first_seen=first_seen,
                updated=first_seen, categories=("العالم",), content_hash=f"h-{title}")


def test_new_items_land_in_every_index_once(redis_client, keys):
    store = Store(redis_client, keys)
    res = store.save_poll(SRC, [item(1), item(2), item(1)], SourceState(next_poll=NOW), NOW)
    assert sorted(res.new) == ["id1", "id2"] and res.updated == () and res.unchanged == 0
    for index in (keys.timeline, keys.source_timeline("sky"), keys.tag_timeline("gulf"),
                  keys.tag_timeline("tv"), keys.country_timeline("AE"), keys.group_pending):
        assert redis_client.zrange(index, 0, -1) == ["id2", "id1"], index
    assert store.get_items(["id1"]) == [item(1)]
    assert redis_client.zscore(keys.schedule, "sky") == NOW.timestamp()
    assert int(redis_client.get(keys.outputs_version)) == 1


def test_a_prepared_poll_stores_what_its_items_store(redis_client, keys):
    # what a feed-reading process hands the worker (prepare_items) lands exactly as the
    # Items would, repeated ids, updates and matching records included
    from aggregator import matching

    def with_record(it):
        return replace(it, match_record=matching.record(it.title, it.summary_text))

    other = Keys(keys.prefix + "-prepared")
    polls = [[with_record(item(1)), with_record(item(2)), with_record(item(1))],
             [replace(item(2), title="عنوان جديد", content_hash="changed"), with_record(item(3))]]
    results = {}
    for ks, prepared in ((keys, False), (other, True)):
        store = Store(redis_client, ks)
        results[prepared] = [store.save_poll(SRC, prepare_items(p) if prepared else p,
                                             SourceState(), NOW) for p in polls]
    assert results[True] == results[False]
    assert [(len(r.new), len(r.updated), r.unchanged) for r in results[True]] == [(2, 0, 0), (1, 1, 0)]
    for n in (1, 2, 3):
        assert redis_client.hgetall(other.item(f"id{n}")) == {
            k: v.replace(keys.prefix, other.prefix) for k, v in redis_client.hgetall(keys.item(f"id{n}")).items()}
    assert redis_client.hgetall(other.group_match) == redis_client.hgetall(keys.group_match)
    assert len(redis_client.hgetall(keys.group_match)) == 3
    assert len(prepare_items(polls[0])) == 3 and prepare_items(polls[0]).distinct == 2


def test_item_hash_is_pinned():
    """The stored layout that group.py, the web and retention read (item_from_hash)."""
    it = Item(id="abc", source="sky", url="https://example.org/1", guid=None, title='عنوان "1"',
              summary_html="<p>x</p>", summary_text="x", published=NOW, first_seen=NOW,
              updated=NOW + timedelta(seconds=1.5), author=None, categories=("العالم", 'a"b'),
              image=None, language="ar", content_hash="h")
    assert item_to_hash(it) == {
        "id": "abc", "source": "sky", "url": "https://example.org/1", "guid": "", "title": 'عنوان "1"',
        "summary_html": "<p>x</p>", "summary_text": "x", "published": "1795953600.0",
        "first_seen": "1795953600.0", "updated": "1795953601.5", "author": "",
        "categories": '["العالم", "a\\"b"]', "image": "", "language": "ar", "content_hash": "h",
    }
    assert item_to_hash(item(1))["categories"] == '["العالم"]'
    assert item_to_hash(replace(item(1), categories=()))["categories"] == "[]"
    assert item_from_hash(item_to_hash(it)) == it


def test_categories_json_is_json_dumps():
    from aggregator.store import _json_strings

    rng = random.Random(7)
    alphabet = ["a", '"', "\\", "\x00", "\x1f", "\x7f", "ع", "\u2028", "\ud800", "😀", "/", " ", "\n"]
    for _ in range(5000):
        values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                  for _ in range(rng.randint(0, 4))]
        assert _json_strings(values) == json.dumps(values, ensure_ascii=False), values


def test_any_text_reaches_redis_unchanged(redis_client, keys):
    # the items travel to the script as one JSON argument: escapes (control characters,
    # quotes, backslashes), raw UTF-8 (Arabic, emoji, U+2028) and empty values must come out
    # of its decoder as they went in
    rng = random.Random(11)
    alphabet = ["a", '"', "\\", "\x00", "\x01", "\x1f", "\x7f", "ع", "\u2028", "\u200f", "😀",
                "/", " ", "\n", "\t", "[", "}", "1e5", "null"]
    store = Store(redis_client, keys)
    odd = []
    for n in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        odd.append(replace(item(n), title=text, summary_text=text, summary_html=text,
                           author=text or None, categories=(text,) if text else (),
                           content_hash=f"h{n}"))
    assert len(store.save_poll(SRC, odd, SourceState(), NOW).new) == 300
    assert store.get_items([it.id for it in odd]) == odd


def test_stored_hashes_are_item_to_hash_new_and_updated(redis_client, keys):
    store = Store(redis_client, keys)
    indexes = json.dumps([keys.timeline, keys.source_timeline("sky"), keys.tag_timeline("gulf"),
                          keys.tag_timeline("tv"), keys.country_timeline("AE")])
    old = [item(1), item(2, first_seen=NOW - timedelta(days=1))]
    store.save_poll(SRC, old, SourceState(), NOW)
    for it in old:
        assert redis_client.hgetall(keys.item(it.id)) == {**item_to_hash(it), "indexes": indexes}
    assert redis_client.zscore(keys.first_seen, "id2") == (NOW - timedelta(days=1)).timestamp()
    later = NOW + timedelta(hours=2)
    retitled = item(2, title="محدث", published=later, first_seen=later)
    store.save_poll(SRC, [retitled, item(1)], SourceState(), later)
    kept = {f: item_to_hash(old[1])[f] for f in ("id", "source", "published", "first_seen")}
    assert redis_client.hgetall(keys.item("id2")) == {**item_to_hash(retitled), **kept, "indexes": indexes}
    assert redis_client.hgetall(keys.item("id1")) == {**item_to_hash(item(1)), "indexes": indexes}


def test_a_poll_of_thousands_is_indexed_whole(redis_client, keys):
    """New items are indexed in ZADDs of up to 1000: more than that spans several."""
    store = Store(redis_client, keys)
    many = [item(n) for n in range(4567)]  # unpack() takes at most ~8000 values
    assert len(store.save_poll(SRC, many, SourceState(), NOW).new) == 4567
    for index in (keys.timeline, keys.source_timeline("sky"), keys.tag_timeline("gulf"),
                  keys.country_timeline("AE"), keys.group_pending):
        assert redis_client.zcard(index) == 4567, index
        assert redis_client.zscore(index, "id4566") == item(4566).published.timestamp()
    assert redis_client.zscore(keys.first_seen, "id1999") == NOW.timestamp()


def test_a_poll_after_redis_forgot_its_scripts_is_stored_once(redis_client, keys):
    """A restarted Redis has no scripts: the poll's EVALSHA fails with NOSCRIPT and is run
    again with the script; the metrics sent beside it are not counted twice."""
    from aggregator.metrics import Recorder
    from aggregator.types import Outcome

    store = Store(redis_client, keys)
    redis_client.script_flush()
    counts = Recorder(redis_client, keys).poll_counts(SRC, Outcome.OK, 0.1)
    res = store.save_poll(SRC, [item(1), item(2)], SourceState(), NOW, also=counts)
    assert sorted(res.new) == ["id1", "id2"]
    assert redis_client.zcard(keys.timeline) == 2
    assert redis_client.hget(keys.metrics_polls, "ok") == "1"
    assert counts.recent == ["ok example.org sky"]


def test_repoll_is_idempotent_and_changes_update_in_place(redis_client, keys):
    store = Store(redis_client, keys)
    store.save_poll(SRC, [item(1), item(2)], SourceState(), NOW)
    again = store.save_poll(SRC, [item(1), item(2)], SourceState(), NOW + timedelta(hours=1))
    assert again.new == () and again.updated == () and again.unchanged == 2
    assert int(redis_client.get(keys.outputs_version)) == 1  # nothing changed: no re-render
    later = NOW + timedelta(hours=2)
    retitled = item(2, title="محدث: عنوان جديد", published=later, first_seen=later)
    res = store.save_poll(SRC, [retitled], SourceState(), later)
    assert res.updated == ("id2",)
    [got] = store.get_items(["id2"])
    assert got.title == "محدث: عنوان جديد" and got.updated == later
    assert got.first_seen == NOW and got.published == item(2).published
    assert redis_client.zcard(keys.timeline) == 2


def test_retention_trims_every_index_together(redis_client, keys):
    store = Store(redis_client, keys)
    old = [item(n, first_seen=NOW - timedelta(days=40)) for n in range(3)]
    fresh = [item(n) for n in range(3, 8)]
    store.save_poll(SRC, old + fresh, SourceState(), NOW)
    assert store.trim(NOW, timedelta(days=30), max_items=4) == 4  # 3 too old + 1 over count
    left = set(redis_client.zrange(keys.timeline, 0, -1))
    assert left == {"id3", "id4", "id5", "id6"}  # the oldest published fresh one went too
    for index in (keys.source_timeline("sky"), keys.tag_timeline("gulf"),
                  keys.country_timeline("AE"), keys.first_seen):
        assert set(redis_client.zrange(index, 0, -1)) == left
    assert not redis_client.exists(keys.item("id0")) and not redis_client.exists(keys.item("id7"))


def test_state_round_trips():
    st = SourceState(etag='"abc"', last_poll=NOW, consecutive_failures=2, errors=5,
                     last_http_status=503, latency_ms=12.5, next_poll=None,
                     suggested_url="https://x/")
    assert state_from_hash(state_to_hash(st)) == st
    assert state_from_hash({}) == SourceState()


def test_embedded_redis_persists_across_restarts_and_is_shared(tmp_path):
    sock = ensure_server(tmp_path)
    assert ensure_server(tmp_path) == sock  # a second process reuses the running server
    store = Store(redis.Redis(unix_socket_path=sock, decode_responses=True), Keys("emb"))
    store.save_poll(SRC, [item(1)], SourceState(), NOW)
    # the RDB snapshots the README promises beside the AOF (a backup reads dump.rdb)
    assert store.r.config_get("save") == {"save": "900 1"}
    stop_server(tmp_path)
    assert (tmp_path / "dump.rdb").exists()
    sock = ensure_server(tmp_path)
    store = Store(redis.Redis(unix_socket_path=sock, decode_responses=True), Keys("emb"))
    try:
        assert [it.title for it in store.get_items(["id1"])] == [item(1).title]
        assert (tmp_path / "appendonlydir").exists() or (tmp_path / "appendonly.aof").exists()
    finally:
        stop_server(tmp_path)


def test_embedded_redis_keeps_an_item_hash_compact(tmp_path):
    # an item's summary is longer than Redis' default 64-byte limit for a compact hash;
    # the embedded server raises it, so an item costs ~40 % less memory
    long_summary = "نص الملخص " * 60
    it = replace(item(1), summary_html=f"<p>{long_summary}</p>", summary_text=long_summary)
    r = redis.Redis(unix_socket_path=ensure_server(tmp_path), decode_responses=True)
    try:
        Store(r, Keys("emb")).save_poll(SRC, [it], SourceState(), NOW)
        assert r.object("encoding", Keys("emb").item("id1")) in ("ziplist", "listpack")
    finally:
        stop_server(tmp_path)


def test_the_last_good_config_is_kept_per_feeds_file(redis_client, keys, tmp_path):
    # `worker.py --once --feeds other.yaml` must not replace what the worker running on
    # feeds.yaml falls back on during a bad edit.
    from aggregator.config import load_config

    main, other = tmp_path / "feeds.yaml", tmp_path / "other.yaml"
    main.write_text("sources:\n  - id: bbc\n    url: https://feeds.bbci.co.uk/arabic/rss.xml\n"
                    "    title: BBC\n", encoding="utf-8")
    other.write_text("sources:\n  - id: dead\n    url: https://dead.example/rss\n"
                     "    title: Dead\n", encoding="utf-8")
    store = Store(redis_client, keys)
    now = datetime(2018, 3, 13, tzinfo=timezone.utc)
    store.keep_good_config(load_config(main), now)
    store.keep_good_config(load_config(other), now)
    assert store.last_good_config(main) == main.read_bytes()
    assert store.last_good_config(other) == other.read_bytes()
    link = tmp_path / "link.yaml"
    link.symlink_to(main)
    assert store.last_good_config(link) == main.read_bytes()  # the same file
    assert store.last_good_config(tmp_path / "never.yaml") is None
