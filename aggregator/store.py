"""Every read and write of items and source state. Key names come from keys.py only.

One poll's writes (new and changed items, every index they belong to, the source state
and its next poll time) go in one MULTI/EXEC transaction, so a crash leaves either all of
them or none: re-polling after a kill -9 never duplicates and never loses an item.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis

from .embedded import ensure_server
from .errors import StoreError
from .keys import Keys
from .settings import Settings
from .types import Item, Source, SourceState

UTC = timezone.utc


def connect(settings: Settings) -> redis.Redis:
    """A client for REDIS_URL, or for the embedded server under AGG_DATA_DIR."""
    try:
        if settings.redis_url:
            client = redis.Redis.from_url(
                settings.redis_url, decode_responses=True, health_check_interval=30,
                socket_connect_timeout=5, socket_timeout=30,
            )
        else:
            sock = ensure_server(settings.data_dir)
            client = redis.Redis(unix_socket_path=sock, decode_responses=True, socket_timeout=30)
        client.ping()
    except redis.RedisError as e:
        raise StoreError(f"Redis unreachable: {e}") from e
    return client


# --- (de)serialisation ----------------------------------------------------------------

def _ts(dt: datetime | None) -> str:
    return "" if dt is None else repr(dt.timestamp())


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), UTC)


def item_to_hash(item: Item) -> dict[str, str]:
    return {
        "id": item.id,
        "source": item.source,
        "url": item.url or "",
        "guid": item.guid or "",
        "title": item.title,
        "summary_html": item.summary_html,
        "summary_text": item.summary_text,
        "published": _ts(item.published),
        "first_seen": _ts(item.first_seen),
        "updated": _ts(item.updated),
        "author": item.author or "",
        "categories": json.dumps(list(item.categories), ensure_ascii=False),
        "image": item.image or "",
        "language": item.language,
        "content_hash": item.content_hash,
    }


def item_from_hash(h: dict[str, str]) -> Item:
    return Item(
        id=h["id"],
        source=h["source"],
        url=h.get("url") or None,
        guid=h.get("guid") or None,
        title=h.get("title", ""),
        summary_html=h.get("summary_html", ""),
        summary_text=h.get("summary_text", ""),
        published=_dt(h["published"]),
        first_seen=_dt(h["first_seen"]),
        updated=_dt(h["updated"]),
        author=h.get("author") or None,
        categories=tuple(json.loads(h.get("categories") or "[]")),
        image=h.get("image") or None,
        language=h.get("language") or "ar",
        content_hash=h.get("content_hash", ""),
    )


_STATE_DATES = {f.name for f in dataclasses.fields(SourceState) if "datetime" in str(f.type)}
_STATE_INTS = {"last_http_status", "consecutive_failures", "errors", "polls"}


def state_to_hash(state: SourceState) -> dict[str, str]:
    out = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if f.name in _STATE_DATES:
            out[f.name] = _ts(value)
        else:
            out[f.name] = "" if value is None else str(value)
    return out


def state_from_hash(h: dict[str, str]) -> SourceState:
    values = {}
    for f in dataclasses.fields(SourceState):
        raw = h.get(f.name, "")
        if f.name in _STATE_DATES:
            values[f.name] = _dt(raw)
        elif f.name in _STATE_INTS:
            values[f.name] = int(raw) if raw else (0 if f.default == 0 else None)
        elif f.name == "latency_ms":
            values[f.name] = float(raw) if raw else None
        else:
            values[f.name] = raw or None
    return SourceState(**values)


# --- the store ------------------------------------------------------------------------

@dataclass(frozen=True)
class UpsertResult:
    new: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: int


class Store:
    def __init__(self, client: redis.Redis, keys: Keys | None = None):
        self.r = client
        self.keys = keys or Keys()

    # items ------------------------------------------------------------------------------
    def _indexes(self, source: Source) -> list[str]:
        k = self.keys
        idx = [k.timeline, k.source_timeline(source.id)]
        idx += [k.tag_timeline(t) for t in source.tags]
        if source.country:
            idx.append(k.country_timeline(source.country))
        return idx

    def save_poll(
        self,
        source: Source,
        items: Sequence[Item],
        state: SourceState,
        now: datetime,
    ) -> UpsertResult:
        """Upsert a poll's items and save the source state, in one transaction.

        A new item is stored whole and indexed; a known item whose content hash changed
        (retitled, summary edited) is updated in place, keeping its id, first-seen and
        published times; anything else is left alone.
        """
        k = self.keys
        # The last occurrence wins when a feed repeats a GUID within one document.
        by_id: dict[str, Item] = {}
        for item in items:
            by_id[item.id] = item
        ids = list(by_id)
        try:
            with self.r.pipeline(transaction=False) as p:
                for item_id in ids:
                    p.hmget(k.item(item_id), "content_hash", "first_seen")
                known = p.execute()
            new, updated = [], []
            indexes = self._indexes(source)
            with self.r.pipeline(transaction=True) as p:
                for item_id, (old_hash, _first_seen) in zip(ids, known):
                    item = by_id[item_id]
                    if old_hash is None:
                        h = item_to_hash(item)
                        h["indexes"] = json.dumps(indexes)
                        p.hset(k.item(item_id), mapping=h)
                        score = item.published.timestamp()
                        for index in indexes:
                            p.zadd(index, {item_id: score})
                        p.zadd(k.first_seen, {item_id: item.first_seen.timestamp()})
                        p.zadd(k.group_pending, {item_id: score})
                        new.append(item_id)
                    elif old_hash != item.content_hash:
                        changed = item_to_hash(item)
                        keep = ("id", "first_seen", "published", "source")
                        p.hset(
                            k.item(item_id),
                            mapping={f: v for f, v in changed.items() if f not in keep}
                            | {"updated": _ts(now)},
                        )
                        updated.append(item_id)
                self._write_state(p, source.id, state)
                if new or updated:
                    p.incr(k.outputs_version)
                p.execute()
        except redis.RedisError as e:
            raise StoreError(f"saving poll of {source.id}: {e}") from e
        return UpsertResult(tuple(new), tuple(updated), len(ids) - len(new) - len(updated))

    def get_items(self, ids: Iterable[str]) -> list[Item]:
        ids = list(ids)
        with self.r.pipeline(transaction=False) as p:
            for item_id in ids:
                p.hgetall(self.keys.item(item_id))
            rows = p.execute()
        return [item_from_hash(h) for h in rows if h]

    def timeline_ids(
        self,
        index: str | None = None,
        before: float | None = None,
        limit: int = 50,
    ) -> list[tuple[str, float]]:
        """Newest first; `before` is an exclusive published-timestamp cursor."""
        index = index or self.keys.timeline
        top = f"({before}" if before is not None else "+inf"
        return self.r.zrevrangebyscore(index, top, "-inf", start=0, num=limit, withscores=True)

    def count_items(self, source_id: str | None = None) -> int:
        index = self.keys.source_timeline(source_id) if source_id else self.keys.timeline
        return self.r.zcard(index)

    def trim(self, now: datetime, max_age: timedelta, max_items: int) -> int:
        """Retention: drop items first seen before now - max_age, then the oldest beyond
        max_items, from every index they are in. Runs on our clock, not pubDates."""
        k = self.keys
        old = set(self.r.zrangebyscore(k.first_seen, "-inf", (now - max_age).timestamp()))
        excess = self.r.zcard(k.timeline) - max_items
        if excess > 0:
            old.update(self.r.zrange(k.timeline, 0, excess - 1))
        if not old:
            return 0
        old = list(old)
        with self.r.pipeline(transaction=False) as p:
            for item_id in old:
                p.hget(k.item(item_id), "indexes")
            index_lists = p.execute()
        with self.r.pipeline(transaction=True) as p:
            for item_id, raw in zip(old, index_lists):
                for index in json.loads(raw or "[]") or [k.timeline]:
                    p.zrem(index, item_id)
                p.zrem(k.first_seen, item_id)
                p.delete(k.item(item_id))
            p.incr(k.outputs_version)
            p.execute()
        return len(old)

    # source state -----------------------------------------------------------------------
    def _write_state(self, p, source_id: str, state: SourceState) -> None:
        p.hset(self.keys.source_state(source_id), mapping=state_to_hash(state))
        if state.next_poll is not None:
            p.zadd(self.keys.schedule, {source_id: state.next_poll.timestamp()})

    def save_state(self, source_id: str, state: SourceState) -> None:
        with self.r.pipeline(transaction=True) as p:
            self._write_state(p, source_id, state)
            p.execute()

    def load_state(self, source_id: str) -> SourceState:
        return state_from_hash(self.r.hgetall(self.keys.source_state(source_id)))

    def load_states(self, source_ids: Sequence[str]) -> dict[str, SourceState]:
        with self.r.pipeline(transaction=False) as p:
            for sid in source_ids:
                p.hgetall(self.keys.source_state(sid))
            rows = p.execute()
        return {sid: state_from_hash(h) for sid, h in zip(source_ids, rows)}

    def forget_schedule(self, source_id: str) -> None:
        self.r.zrem(self.keys.schedule, source_id)

    # meta -------------------------------------------------------------------------------
    def heartbeat(self, now: datetime, ttl: int = 600) -> None:
        self.r.set(self.keys.heartbeat, now.isoformat(), ex=ttl)

    def last_heartbeat(self) -> datetime | None:
        raw = self.r.get(self.keys.heartbeat)
        return datetime.fromisoformat(raw) if raw else None

    def outputs_version(self) -> int:
        return int(self.r.get(self.keys.outputs_version) or 0)
