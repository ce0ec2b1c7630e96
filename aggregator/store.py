"""Every read and write of items and source state. Key names come from keys.py only.

One poll's writes (new and changed items, every index they belong to, the source state
and its next poll time) go in one MULTI/EXEC transaction, so a crash leaves either all of
them or none: re-polling after a kill -9 never duplicates and never loses an item.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from json.encoder import encode_basestring as _encode_basestring
from typing import TYPE_CHECKING

import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .embedded import ensure_server
from .errors import StoreError
from .keys import Keys
from .settings import Settings
from .types import Item, Source, SourceState

if TYPE_CHECKING:
    from .metrics import PollCounts

log = logging.getLogger(__name__)
UTC = timezone.utc


def connect(settings: Settings, timeout: float = 30.0, retries: int = 2) -> redis.Redis:
    """A client for REDIS_URL, or for the embedded server under AGG_DATA_DIR.

    `timeout` bounds one command and `retries` how often it is tried again: redis-py's
    default retries a timed-out command ten times, so a stalled server held a reader's
    request for five minutes. The worker keeps 30 s (its grouping scripts are long); the
    web app asks for a few seconds and no retry, so a reader gets a 503 (or cached feed
    bytes) at once."""
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)
    try:
        if settings.redis_url:
            client = redis.Redis.from_url(
                settings.redis_url, decode_responses=True, health_check_interval=30,
                socket_connect_timeout=min(5.0, timeout), socket_timeout=timeout, retry=retry,
            )
        else:
            sock = ensure_server(settings.data_dir)
            client = redis.Redis(unix_socket_path=sock, decode_responses=True,
                                 socket_connect_timeout=min(5.0, timeout),
                                 socket_timeout=timeout, retry=retry)
        client.ping()
    except redis.RedisError as e:
        raise StoreError(f"Redis unreachable: {e}") from e
    return client



def open_store(settings: Settings) -> Store:
    """The store these settings name (REDIS_URL or the embedded server, their key prefix):
    what every command and process that is not the web app opens."""
    return Store(connect(settings), Keys(settings.key_prefix))

# --- (de)serialisation ----------------------------------------------------------------

def _ts(dt: datetime | None) -> str:
    return "" if dt is None else repr(dt.timestamp())


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromtimestamp(float(value), UTC)


def _json_strings(values: Sequence[str]) -> str:
    """json.dumps(list(values), ensure_ascii=False) for strings, without building an
    encoder per call."""
    return "[" + ", ".join(map(_encode_basestring, values)) + "]"


# The fields of an item's hash, in the order of _item_values.
_ITEM_FIELDS = ("id", "source", "url", "guid", "title", "summary_html", "summary_text",
                "published", "first_seen", "updated", "author", "categories", "image",
                "language", "content_hash")
_ITEM_FIELDS_JSON = json.dumps(_ITEM_FIELDS)


def _item_values(item: Item, published: str, first_seen: str, updated: str) -> list[str]:
    return [
        item.id, item.source, item.url or "", item.guid or "", item.title, item.summary_html,
        item.summary_text, published, first_seen, updated, item.author or "",
        _json_strings(item.categories),
        item.image or "", item.language, item.content_hash,
    ]


def item_to_hash(item: Item) -> dict[str, str]:
    values = _item_values(item, _ts(item.published), _ts(item.first_seen), _ts(item.updated))
    return dict(zip(_ITEM_FIELDS, values))


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


@dataclass(frozen=True)
class PreparedItems:
    """A poll's items in the form save_poll sends them to Redis.

    A feed-reading process (parsepool.py) hands the worker this rather than Item objects:
    bytes cross the pipe at memcpy speed, while unpickling the Items and encoding them
    again for the script took the worker's one GIL. In a cold start of 500 feeds (15,000
    items) the worker's CPU went 0.85 -> 0.56 s and the pass 0.88-0.92x as long."""

    seen: int  # entries the feed held, repeated ids included
    distinct: int  # items after repeated ids are dropped (the last occurrence wins)
    values: bytes  # JSON list: per item its field values, in _ITEM_FIELDS order
    match_records: bytes  # JSON list: the items' matching records, in the same order

    def __len__(self) -> int:  # as for the list of Items it stands for
        return self.seen


def prepare_items(items: Sequence[Item]) -> PreparedItems:
    """Pure: what save_poll sends for `items`."""
    by_id: dict[str, Item] = {}
    for item in items:  # the last occurrence wins when a feed repeats a GUID
        by_id[item.id] = item
    stamps: dict[datetime, str] = {}  # a poll's items share first_seen and updated

    def stamp(dt: datetime) -> str:
        text = stamps.get(dt)
        if text is None:
            text = stamps[dt] = _ts(dt)
        return text

    values: list[str] = []
    for item in by_id.values():
        values += _item_values(item, _ts(item.published), stamp(item.first_seen), stamp(item.updated))
    return PreparedItems(len(items), len(by_id), orjson.dumps(values),
                         orjson.dumps([item.match_record for item in by_id.values()]))


# --- the store ------------------------------------------------------------------------

@dataclass(frozen=True)
class UpsertResult:
    new: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: int


def _flat_json(mapping: dict[str, str]) -> str:
    return json.dumps([v for pair in mapping.items() for v in pair], ensure_ascii=False)


# ARGV: now, version key, state key, schedule key, source id, next poll ('' = none),
# state fields (flat JSON list), first-seen key, pending key, index keys (JSON list),
# the item hash's field names (JSON list), then the items as one flat JSON list: per item
# its field values in that order (PreparedItems.values). One argument, not one per value:
# redis-py runs a Python generator step per argument it packs, half of a cold poll's
# store call. Then the grouping's match key and the items' matching records (JSON list,
# in item order; '' = none): a new item's record waits there for the grouper. Last, the
# item keys' prefix (Keys.item_prefix): an item's key is it plus the item's id. Then the
# key of retention's tombstones: an item dropped by retention is not stored again.
_SAVE_POLL_LUA = """
local now, indexes_json = ARGV[1], ARGV[10]
local indexes = cjson.decode(indexes_json)
local names = cjson.decode(ARGV[11])
local items = cjson.decode(ARGV[12])
local at = {}
for f, name in ipairs(names) do at[name] = f end
local keep = {id = true, first_seen = true, published = true, source = true}
local matches = cjson.decode(ARGV[14])
local item_prefix, trimmed = ARGV[15], ARGV[16]
local new, updated, scores, seens, match = {}, {}, {}, {}, {}
for i = 0, #items - 1, #names do
  local id, hash = items[i + at.id], items[i + at.content_hash]
  local key = item_prefix .. id
  local old = redis.call('HGET', key, 'content_hash')
  if not old and redis.call('ZSCORE', trimmed, id) then
    old = hash  -- dropped by retention while its feed still lists it: leave it out
  end
  if not old then
    local fields = {'indexes', indexes_json}
    for f = 1, #names do
      fields[#fields + 1] = names[f]
      fields[#fields + 1] = items[i + f]
    end
    redis.call('HSET', key, unpack(fields))
    new[#new + 1] = id
    scores[#new], seens[#new] = items[i + at.published], items[i + at.first_seen]
    local m = matches[i / #names + 1]
    if m ~= '' then
      match[#match + 1] = id
      match[#match + 1] = m
    end
  elseif old ~= hash then
    local changed = {'updated', now}
    for f = 1, #names do
      if not keep[names[f]] then
        changed[#changed + 1] = names[f]
        changed[#changed + 1] = items[i + f]
      end
    end
    redis.call('HSET', key, unpack(changed))
    updated[#updated + 1] = id
  end
end
-- the new items into each index: one ZADD per index and 1000 items, not one per item
local function index_new(key, by)
  local args = {}
  for j = 1, #new do
    args[#args + 1] = by[j]
    args[#args + 1] = new[j]
    if #args == 2000 or j == #new then
      redis.call('ZADD', key, unpack(args))
      args = {}
    end
  end
end
for _, index in ipairs(indexes) do index_new(index, scores) end
index_new(ARGV[8], seens)
index_new(ARGV[9], scores)
for j = 1, #match, 2000 do  -- the new items' matching terms, for the grouper
  redis.call('HSET', ARGV[13], unpack(match, j, math.min(j + 1999, #match)))
end
redis.call('HSET', ARGV[3], unpack(cjson.decode(ARGV[7])))
if ARGV[6] == '' then
  redis.call('ZREM', ARGV[4], ARGV[5])
else
  redis.call('ZADD', ARGV[4], ARGV[6], ARGV[5])
end
if #new > 0 or #updated > 0 then redis.call('INCR', ARGV[2]) end
return {new, updated}
"""


class Store:
    def __init__(self, client: redis.Redis, keys: Keys | None = None):
        self.r = client
        self.keys = keys or Keys()
        self._save_poll = client.register_script(_SAVE_POLL_LUA)

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
        items: Sequence[Item] | PreparedItems,
        state: SourceState,
        now: datetime,
        also: PollCounts | None = None,
    ) -> UpsertResult:
        """Upsert a poll's items (or prepare_items' form of them) and save the source
        state: one atomic round trip.

        A new item is stored whole, indexed and queued for grouping; a known item whose
        content hash changed (retitled, summary edited) is updated in place, keeping its
        id, first-seen and published times; anything else is left alone, and so is an item
        retention dropped (P:trimmed) that its feed still lists. The decisions
        run inside Redis (_SAVE_POLL_LUA), so there is no read-then-write gap and a kill
        at any moment leaves all of the poll or none of it. `also` (the poll's metrics)
        rides in the same pipeline: one round trip per poll.
        """
        k = self.keys
        batch = items if isinstance(items, PreparedItems) else prepare_items(items)
        args = [
            _ts(now), k.outputs_version, k.source_state(source.id), k.schedule, source.id,
            _ts(state.next_poll), _flat_json(state_to_hash(state)), k.first_seen,
            k.group_pending, json.dumps(self._indexes(source)), _ITEM_FIELDS_JSON,
            batch.values, k.group_match, batch.match_records, k.item_prefix, k.trimmed,
        ]
        try:
            with self.r.pipeline(transaction=False) as p:
                # EVALSHA rather than the Script object: a pipeline holding a Script first
                # asks SCRIPT EXISTS, a round trip of its own on every poll.
                p.evalsha(self._save_poll.sha, 0, *args)
                if also is not None:
                    also.queue(p)
                results = p.execute(raise_on_error=False)
        except redis.RedisError as e:
            if also is not None:
                also.lost()
            raise StoreError(f"saving poll of {source.id}: {e}") from e
        if also is not None:
            also.done(results[1:])
        try:
            if isinstance(results[0], redis.exceptions.NoScriptError):  # a new or flushed Redis
                results[0] = self._save_poll(args=args)  # loads the script, then runs it
            elif isinstance(results[0], Exception):
                raise results[0]
        except redis.RedisError as e:
            raise StoreError(f"saving poll of {source.id}: {e}") from e
        new, updated = results[0]
        return UpsertResult(tuple(new), tuple(updated), batch.distinct - len(new) - len(updated))

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

    def trim(self, now: datetime, max_age: timedelta, max_items: int,
             before_drop: Callable[[list[str]], object] | None = None) -> int:
        """Retention: drop items first seen before now - max_age, then the oldest beyond
        max_items, from every index they are in. Runs on our clock, not pubDates.
        `before_drop(ids)` runs first (the grouper takes them out of their stories); if it
        raises, nothing is dropped and the next run selects the same items again. The
        chosen ids are recorded (P:retiring) before that step: a pass killed between it and
        the delete is finished by the next pass, even if the limits were raised meanwhile,
        instead of leaving stored items that belong to no story. Dropped ids are kept as
        tombstones for max_age, so a feed that still lists them does not bring them back
        as new items (a count cap below the feeds' size would otherwise cycle them)."""
        k = self.keys
        self.r.zremrangebyscore(k.trimmed, "-inf", (now - max_age).timestamp())
        old = set(self.r.smembers(k.retiring))
        old |= set(self.r.zrangebyscore(k.first_seen, "-inf", (now - max_age).timestamp()))
        excess = self.r.zcard(k.timeline) - len(old) - max_items
        if excess > 0:  # then the oldest published of what is left, beyond max_items
            for item_id in self.r.zrange(k.timeline, 0, excess + len(old) - 1):
                if excess == 0:
                    break
                if item_id not in old:
                    old.add(item_id)
                    excess -= 1
        if not old:
            return 0
        old = sorted(old)
        self.r.sadd(k.retiring, *old)
        if before_drop is not None:
            before_drop(old)
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
            # an item re-queued by a poll while it was retiring is not grouped after this
            p.zrem(k.group_pending, *old)
            p.zadd(k.trimmed, dict.fromkeys(old, now.timestamp()))
            p.set(k.trimmed_at, repr(now.timestamp()))
            p.delete(k.retiring)
            p.incr(k.outputs_version)
            p.execute()
        return len(old)

    def last_trim(self) -> datetime | None:
        """When retention last dropped items (None: never)."""
        raw = self.r.get(self.keys.trimmed_at)
        return datetime.fromtimestamp(float(raw), timezone.utc) if raw else None

    # source state -----------------------------------------------------------------------
    def save_state(self, source_id: str, state: SourceState) -> None:
        """State alone (no poll): operators' edits and tests."""
        with self.r.pipeline(transaction=True) as p:
            p.hset(self.keys.source_state(source_id), mapping=state_to_hash(state))
            if state.next_poll is None:
                p.zrem(self.keys.schedule, source_id)
            else:
                p.zadd(self.keys.schedule, {source_id: state.next_poll.timestamp()})
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

    # One polling worker per store: two would fetch every feed twice and double the counts.
    _RENEW_LUA = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                  "return redis.call('expire', KEYS[1], ARGV[2]) else return 0 end")
    _RELEASE_LUA = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                    "return redis.call('del', KEYS[1]) else return 0 end")

    def claim_worker_lock(self, holder: str, ttl: int) -> str | None:
        """Take the worker lock for `holder`; None when taken, else who holds it."""
        if self.r.set(self.keys.worker_lock, holder, nx=True, ex=ttl):
            return None
        return self.r.get(self.keys.worker_lock) or ""

    def renew_worker_lock(self, holder: str, ttl: int) -> bool:
        return bool(self.r.eval(self._RENEW_LUA, 1, self.keys.worker_lock, holder, ttl))

    def release_worker_lock(self, holder: str) -> None:
        self.r.eval(self._RELEASE_LUA, 1, self.keys.worker_lock, holder)

    def last_heartbeat(self) -> datetime | None:
        raw = self.r.get(self.keys.heartbeat)
        return datetime.fromisoformat(raw) if raw else None

    def _config_key(self, path: str | os.PathLike) -> str:
        real = os.path.realpath(path)  # a symlinked or relative path is the same file
        return self.keys.config_good(hashlib.sha256(real.encode()).hexdigest()[:16])

    def keep_good_config(self, config, now: datetime) -> None:
        """Keep a valid feeds file as the last good config of that file (written when it
        changed). Best effort: nothing else depends on it and the next valid load keeps
        it, so a Redis error is logged, not raised."""
        key = self._config_key(config.path)
        try:
            if config.data and self.r.hget(key, "digest") != config.digest:
                self.r.hset(key, mapping={"data": config.data.decode("utf-8"),
                                          "digest": config.digest, "saved": now.isoformat()})
        except redis.RedisError as e:
            log.warning("could not keep %s as the last good config: %s", config.path, e)

    def last_good_config(self, path: str | os.PathLike) -> bytes | None:
        data = self.r.hget(self._config_key(path), "data")
        return data.encode("utf-8") if data else None

    def outputs_version(self) -> int:
        return int(self.r.get(self.keys.outputs_version) or 0)
