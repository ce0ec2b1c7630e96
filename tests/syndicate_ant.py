"""Real Arabic items for output tests: tests/data/syndicate_ant_items.jsonl.

31 items of 2018-03-12/13 from the ANT corpus multisource v2.1 (Chouigui et al.,
antcorpus/antcorpus.multisource.data, Apache-2.0): their real titles, URLs (Al Arabiya and
France 24 publish raw Arabic IRIs), pubDates and abstracts, with this project's hand-made
story/topic gold labels (shared/data/gold). Four stories are covered by 4-6 outlets each;
the rest are single-outlet stories, several with quotes in their titles.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from aggregator.types import Item, Source, SourceState, Story, Topic

UTC = timezone.utc
PATH = os.path.join(os.path.dirname(__file__), "data", "syndicate_ant_items.jsonl")

SOURCES = {
    "skynews": Source(id="skynews", url="https://www.skynewsarabia.com/web/rss",
                      title="سكاي نيوز عربية", site="https://www.skynewsarabia.com/",
                      country="AE", tags=("news", "gulf"), rank=0),
    "alarabiya": Source(id="alarabiya", url="https://www.alarabiya.net/.mrss/ar.xml",
                        title="العربية", site="https://www.alarabiya.net/",
                        country="SA", tags=("news", "gulf"), rank=1),
    "france24": Source(id="france24", url="https://www.france24.com/ar/rss",
                       title="فرانس 24", site="https://www.france24.com/ar/",
                       country="FR", tags=("news",), rank=2),
    "bbc": Source(id="bbc", url="https://feeds.bbci.co.uk/arabic/rss.xml",
                  title="بي بي سي عربي", site="https://www.bbc.com/arabic",
                  country="GB", tags=("news",), rank=3),
    "cnn": Source(id="cnn", url="https://arabic.cnn.com/api/v1/rss/rss.xml",
                  title="سي إن إن بالعربية", site="https://arabic.cnn.com/",
                  country="US", tags=("news",), rank=4),
}
SRC_OF = {"skynews": "skynews", "alarabia": "alarabiya", "france24": "france24",
          "BBC": "bbc", "CNN": "cnn"}


@dataclass(frozen=True)
class Row:
    item: Item
    story: str
    topic: str


def load_rows(path: str = PATH) -> list[Row]:
    with open(path, encoding="utf-8") as f:
        return [row_from_ant(json.loads(line)) for line in f if line.strip()]


def row_from_ant(d: dict) -> Row:
    """One ANT record (+ gold story/topic) -> an Item as normalise would store it."""
    published = datetime.fromisoformat(d["time_utc"]).astimezone(UTC)
    item = Item(
        id=hashlib.sha1(d["url"].encode()).hexdigest()[:16],
        source=SRC_OF[d["src"]],
        url=d["url"],
        guid=d["url"],
        title=d["title"],
        summary_html="<p>" + d["abstract"].replace("&", "&amp;").replace("<", "&lt;")
        + "</p>",
        summary_text=d["abstract"],
        published=published,
        first_seen=published + timedelta(minutes=2),
        updated=published + timedelta(minutes=2),
        author=d["author"] or None,
        content_hash=hashlib.sha1(d["title"].encode()).hexdigest(),
    )
    return Row(item, d["story"], d["topic"])


def items() -> list[Item]:
    return [r.item for r in load_rows()]


def gold_stories(rows: list[Row]) -> tuple[dict[str, Story], dict[str, Topic]]:
    """Stories and topics as the grouper would build them, from the gold labels."""
    by_story: dict[str, list[Row]] = {}
    for r in rows:
        by_story.setdefault(r.story, []).append(r)
    stories, topics = {}, {}
    for sid, members in by_story.items():
        members.sort(key=lambda r: (r.item.published, r.item.id))
        srcs = []
        for r in members:
            if r.item.source not in srcs:
                srcs.append(r.item.source)
        # updated: when the last outlet joined (a second report by a known outlet counts too)
        stories[sid] = Story(
            id=sid,
            lead_item=members[0].item.id,
            items=tuple(r.item.id for r in members),
            sources=tuple(srcs),
            first_published=members[0].item.published,
            last_published=members[-1].item.published,
            updated=members[-1].item.first_seen,
            label=members[0].item.title,
            topic=members[0].topic,
        )
    for st in stories.values():
        t = topics.get(st.topic)
        topics[st.topic] = Topic(
            id=st.topic, label=st.topic.replace("-", " "), size=(t.size if t else 0) + 1,
            updated=max(st.updated, t.updated) if t else st.updated,
        )
    return stories, topics


def save_all(store, rows: list[Row], now: datetime | None = None) -> None:
    """Store the rows through the real write path (one poll per outlet)."""
    now = now or datetime(2018, 3, 14, tzinfo=UTC)
    by_src: dict[str, list[Item]] = {}
    for r in rows:
        by_src.setdefault(r.item.source, []).append(r.item)
    for sid, its in by_src.items():
        store.save_poll(SOURCES[sid], its, SourceState(last_poll=now), now)


class GoldGrouper:
    """Stand-in for aggregator.group.Grouper with the same read contract, built from the
    gold labels: lets output tests pin exact story contents independently of the
    grouping algorithm."""

    def __init__(self, stories: dict[str, Story], topics: dict[str, Topic]):
        self.stories, self.topics = stories, topics
        self.item_story = {i: s.id for s in stories.values() for i in s.items}

    def get_stories(self, ids):
        return [self.stories[i] for i in ids if i in self.stories]

    def story_of(self, item_id):
        return self.item_story.get(item_id)

    def stories_of(self, item_ids):
        return [self.item_story.get(i) for i in item_ids]

    def story_timeline(self, before=None, limit=50):
        rows = sorted(((s.id, s.last_published.timestamp()) for s in self.stories.values()),
                      key=lambda r: (r[1], r[0]), reverse=True)
        if before is not None:
            rows = [r for r in rows if r[1] < before]
        return rows[:limit]

    def get_topic(self, topic_id):
        return self.topics.get(topic_id)

    def get_topics(self, ids):
        return {t: self.topics[t] for t in ids if t in self.topics}

    def topic_stories(self, topic_id, limit=50):
        """Newest first, as the grouper's sorted set answers."""
        sids = [s for s in self.stories.values() if s.topic == topic_id]
        sids.sort(key=lambda s: (s.last_published.timestamp(), s.id), reverse=True)
        return [s.id for s in sids[:limit]]

    def story_items(self, story_id):
        s = self.stories.get(story_id)
        return list(s.items) if s else []


class LiveServer:
    """The Flask app on a real socket (127.0.0.1, ephemeral port), in a thread."""

    def __init__(self, app):
        import threading

        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_app(redis_client, keys, grouper=None, **config):
    """An app over the test's Redis keys, with the fixture outlets as configured sources
    and (by default) the gold-label grouper."""
    from web import create_app
    from web.extensions import services

    app = create_app({
        "TESTING": True, "REDIS_CLIENT": redis_client, "AGG_KEY_PREFIX": keys.prefix,
        "AGG_SOURCES": tuple(SOURCES.values()), **config,
    })
    with app.app_context():
        if grouper is not None:
            services()._grouper = grouper
    return app


def jsonfeed_validator():
    """Draft-7 validator for tests/data/jsonfeed-1.1.schema.json, with our own RFC 3339
    date-time check: jsonschema checks that format only when the optional
    rfc3339-validator package happens to be installed, and silently passes otherwise."""
    import re

    import jsonschema

    path = os.path.join(os.path.dirname(__file__), "data", "jsonfeed-1.1.schema.json")
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    checker = jsonschema.FormatChecker()
    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value):
        if not isinstance(value, str):
            return True
        if not rfc3339.match(value):
            return False
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # real calendar date
        return True

    return jsonschema.Draft7Validator(schema, format_checker=checker)
