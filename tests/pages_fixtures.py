"""Real ANT items (tests/data/ant_pages_items.jsonl, see its README) stored in a real Redis,
a feeds.yaml for their five outlets, and a grouper that follows the hand labels so page
tests know exactly which stories and topics exist. Shared by test_pages and test_browser.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from aggregator.config import load_config
from aggregator.store import Store
from aggregator.types import Item, Source, SourceState, Story, Topic

UTC = timezone.utc
DATA = os.path.join(os.path.dirname(__file__), "data", "ant_pages_items.jsonl")

# ANT's source names -> our source ids (as in feeds.yaml)
SOURCE_IDS = {"BBC": "bbc_arabic", "skynews": "skynewsarabia", "alarabia": "alarabiya",
              "CNN": "cnn_arabic", "france24": "france24_ar"}

FEEDS_YAML = """\
defaults:
  interval: 10m
sources:
  - id: bbc_arabic
    url: https://feeds.bbci.co.uk/arabic/rss.xml
    title: بي بي سي عربي
    site: https://www.bbc.com/arabic
    country: GB
    tags: [international, broadcaster]
  - id: skynewsarabia
    url: https://www.skynewsarabia.com/rss
    title: سكاي نيوز عربية
    site: https://www.skynewsarabia.com
    country: AE
    tags: [gulf, broadcaster]
  - id: alarabiya
    url: https://www.alarabiya.net/tools/mrss/?cat=main
    title: العربية
    site: https://www.alarabiya.net
    country: AE
    tags: [gulf, broadcaster]
  - id: cnn_arabic
    url: https://arabic.cnn.com/rss
    title: CNN بالعربية
    site: https://arabic.cnn.com
    country: US
    tags: [international]
  - id: france24_ar
    url: https://www.france24.com/ar/rss
    title: فرانس 24
    site: https://www.france24.com/ar/
    country: FR
    tags: [international]
"""

# Labels a topic index would give the threads with several stories; others take the first
# words of their lead headline.
TOPIC_LABELS = {
    "skripal-poisoning": "تسميم الجاسوس سكريبال",
    "hamdallah-convoy-attack": "استهداف موكب الحمد الله",
    "nepal-plane-crash": "تحطم طائرة في نيبال",
}

# The page clock for tests: 17 minutes after the newest item (2018-03-13T23:43:07Z).
NOW = datetime(2018, 3, 14, 0, 0, 7, tzinfo=UTC)


def load_rows() -> list[dict]:
    with open(DATA, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def item_id(row: dict) -> str:
    return "ant-" + row["docno"].lower()


def make_item(row: dict) -> Item:
    published = datetime.fromisoformat(row["time_utc"]).astimezone(UTC)
    return Item(
        id=item_id(row), source=SOURCE_IDS[row["src"]], url=row["url"], guid=row["url"],
        title=row["title"], summary_html=html.escape(row["abstract"]),
        summary_text=row["abstract"], published=published,
        first_seen=published + timedelta(minutes=2), updated=published,
        author=row.get("author") or None, categories=(row["cat"],),
        content_hash=hashlib.sha1(row["title"].encode()).hexdigest(),
    )


def store_items(store: Store, sources: list[Source], items: list[Item], now=NOW) -> None:
    by_source = defaultdict(list)
    for it in items:
        by_source[it.source].append(it)
    for s in sources:
        state = SourceState(
            last_poll=now - timedelta(minutes=3), last_success=now - timedelta(minutes=3),
            last_status="ok", last_http_status=200, polls=12,
            next_poll=now + timedelta(minutes=7),
        )
        store.save_poll(s, by_source.get(s.id, []), state, now)


class GoldGrouper:
    """The Grouper contract (aggregator/group.py) answered from the hand labels: stories and
    topics are exactly the gold ones, ids are the gold slugs, the lead is the earliest report
    of the best-ranked outlet."""

    def __init__(self, rows: list[dict], ranks: dict[str, int]):
        items = {item_id(r): make_item(r) for r in rows}
        members = defaultdict(list)
        self.topic_of_story = {}
        for r in rows:
            members[r["story"]].append(items[item_id(r)])
            self.topic_of_story[r["story"]] = r["topic"]
        self.stories: dict[str, Story] = {}
        self._story_of = {}
        for sid, its in members.items():
            its.sort(key=lambda i: i.published)
            lead = min(its, key=lambda i: (ranks.get(i.source, 99), i.published))
            sources = tuple(dict.fromkeys(i.source for i in its))
            self.stories[sid] = Story(
                id=sid, lead_item=lead.id, items=tuple(i.id for i in its), sources=sources,
                first_published=its[0].published, last_published=its[-1].published,
                updated=its[-1].published, label=lead.title, topic=self.topic_of_story[sid],
            )
            for i in its:
                self._story_of[i.id] = sid
        self.topic_members: dict[str, list[str]] = defaultdict(list)
        for sid, st in self.stories.items():
            self.topic_members[st.topic].append(sid)
        self.topics: dict[str, Topic] = {}
        for tid, sids in self.topic_members.items():
            label = TOPIC_LABELS.get(tid) or " ".join(self.stories[sids[0]].label.split()[:4])
            self.topics[tid] = Topic(tid, label, len(sids),
                                     max(self.stories[s].updated for s in sids))

    def process_pending(self, now):
        return 0

    def get_stories(self, ids):
        return [self.stories[i] for i in ids if i in self.stories]

    def story_of(self, item_id):
        return self._story_of.get(item_id)

    def stories_of(self, item_ids):
        return [self._story_of.get(i) for i in item_ids]

    def story_items(self, story_id):
        st = self.stories.get(story_id)
        return list(st.items) if st else []

    def story_timeline(self, before=None, limit=50):
        rows = sorted(((s.id, s.last_published.timestamp()) for s in self.stories.values()),
                      key=lambda r: -r[1])
        return [r for r in rows if before is None or r[1] < before][:limit]

    def get_topic(self, topic_id):
        return self.topics.get(topic_id)

    def get_topics(self, ids):
        return {t: self.topics[t] for t in ids if t in self.topics}

    def topic_stories(self, topic_id, limit=50):
        sids = self.topic_members.get(topic_id, [])
        return sorted(sids, key=lambda s: -self.stories[s].last_published.timestamp())[:limit]


def gold_story_count(rows) -> int:
    return len({r["story"] for r in rows})


# --- fixtures shared by the page tests (imported by name into their modules) -----------------

@pytest.fixture
def feeds_path(tmp_path):
    p = tmp_path / "feeds.yaml"
    p.write_text(FEEDS_YAML, encoding="utf-8")
    return p


@pytest.fixture
def config(feeds_path):
    return load_config(feeds_path)


@pytest.fixture
def store(redis_client, keys, config):
    s = Store(redis_client, keys)
    store_items(s, list(config.sources), [make_item(r) for r in load_rows()])
    return s
