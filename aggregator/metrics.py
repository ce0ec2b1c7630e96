"""Counters every process shares, kept in Redis, and the Prometheus collector that reads them.

The worker and the web app are different processes (and gunicorn forks several web
workers), so prometheus_client's in-process counters would each hold a fragment and reset
on every restart. Here every increment is a Redis HINCRBY on the fixed `metrics_*` keys
(aggregator/keys.py), and the web process exposes them at /metrics through `RedisCollector`,
which reads Redis at scrape time. The fetch-latency histogram is a hash of fixed buckets
(per-bucket counts; the collector accumulates them into Prometheus' cumulative form).

A poll's increments ride in the pipeline of the poll's own store call (PollCounts, sent with
Store.save_poll): one round trip for both, and the counts never block or undo the items.
Counts that cannot reach Redis (it is down: the Redis-error count itself) are held in the
process and added with its next successful write.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import redis

from .keys import Keys
from .types import Outcome, Source

log = logging.getLogger(__name__)

# Seconds. Feeds answer in 0.1-2 s; the fetch timeout is 20 s (40 s for a dripping body).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
RECENT_KEEP = 50  # latest poll outcomes kept for our-outage detection (aggregator/alerts.py)

# name in the counters hash -> (metric name without _total, help)
COUNTERS = {
    "items_new": ("agg_items_ingested", "Items stored for the first time"),
    "items_updated": ("agg_items_updated", "Stored items whose content changed (retitled, edited)"),
    "stories_formed": ("agg_stories_formed", "New stories started by grouping"),
    "cache_hits": ("agg_output_cache_hits", "Feed outputs answered from rendered bytes"),
    "cache_renders": ("agg_output_renders", "Feed outputs rendered and cached (misses)"),
    "page_cache_hits": ("agg_page_cache_hits", "Pages answered from rendered bytes"),
    "page_cache_renders": ("agg_page_renders", "Pages rendered and cached (misses)"),
    "redis_errors": ("agg_redis_errors", "Redis commands that failed (worker and web)"),
    "alerts_sent": ("agg_alerts_sent", "Alert webhook calls answered with 2xx"),
    "alerts_failed": ("agg_alerts_failed", "Alert webhook calls that failed or were refused"),
}


def bucket_of(seconds: float) -> str:
    """The histogram field a latency is counted under: the smallest bound it fits."""
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return f"{bound:g}"
    return "+Inf"


# One poll's increments and the read-back of the latest outcomes, as one script call: as six
# commands on the poll's pipeline they cost the polling thread ~0.3 ms per poll in
# redis-py's packing and parsing, a quarter of a 304 poll's CPU.
# KEYS: polls, latency, counters, recent. ARGV: outcome, latency bucket, elapsed seconds,
# the recent entry, how many recent entries to keep, how many to read back, then counter
# name / count pairs. Returns that many recent entries, newest first.
_POLL_LUA = """
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'sum', ARGV[3])
for i = 7, #ARGV, 2 do redis.call('HINCRBY', KEYS[3], ARGV[i], ARGV[i + 1]) end
redis.call('LPUSH', KEYS[4], ARGV[4])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
if tonumber(ARGV[6]) == 0 then return {} end
return redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[6]) - 1)
"""


class Recorder:
    """Writes the shared counters. One per process; thread-safe."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self._poll_script = client.register_script(_POLL_LUA)
        self._lock = threading.Lock()
        self._pending: collections.Counter[str] = collections.Counter()

    # counts held in the process until the next write -------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        if n:
            with self._lock:
                self._pending[name] += n

    def redis_error(self) -> None:
        self.count("redis_errors")

    def _take_pending(self) -> dict[str, int]:
        with self._lock:
            taken = dict(self._pending)
            self._pending.clear()
        return taken

    def _give_back(self, taken: dict[str, int], redis_error: bool = True) -> None:
        with self._lock:
            self._pending.update(taken)
            if redis_error:
                self._pending["redis_errors"] += 1

    def flush(self) -> bool:
        """Add the held counts to Redis. False (and kept for later) when Redis is down."""
        taken = self._take_pending()
        if not taken:
            return True
        try:
            with self.r.pipeline(transaction=False) as p:
                for name, n in taken.items():
                    p.hincrby(self.keys.metrics_counters, name, n)
                p.execute()
            return True
        except (redis.RedisError, OSError):
            self._give_back(taken)
            return False

    # the poll path -----------------------------------------------------------------------
    def poll_counts(self, source: Source, outcome: Outcome, elapsed: float,
                    read_recent: int = RECENT_KEEP) -> PollCounts:
        """One poll's counts, to be sent in the poll's own pipeline (Store.save_poll); the
        latest `read_recent` poll outcomes come back in its `recent`."""
        return PollCounts(self, source, outcome, elapsed, read_recent)

    def grouped(self, assignments: Sequence[tuple]) -> None:
        """Count the stories a grouping batch started: an item that founds a story gives it
        its id (aggregator.group.story_id_for)."""
        if not assignments:
            return
        from .group import story_id_for

        self.count("stories_formed", sum(1 for a in assignments
                                         if len(a) >= 2 and a[1] == story_id_for(a[0])))
        self.flush()


class PollCounts:
    """One poll's increments (outcome, latency, the counts held in the process) and the
    latest poll outcomes read back for our-outage detection, queued on the pipeline that
    carries the poll's store call: one round trip per poll for both."""

    def __init__(self, recorder: Recorder, source: Source, outcome: Outcome, elapsed: float,
                 read_recent: int = RECENT_KEEP):
        self.recorder = recorder
        self.source = source
        self.outcome = outcome
        self.elapsed = elapsed
        self.read_recent = read_recent
        self.recent: list[str] = []  # "outcome host source", newest first, once done
        self._taken: dict[str, int] = {}
        self._keys: tuple[str, ...] = ()  # the script call queue() made, for a NOSCRIPT rerun
        self._args: list[str] = []

    def queue(self, p) -> None:
        k = self.recorder.keys
        host = (urlsplit(self.source.url).hostname or "-").lower()
        self._taken = self.recorder._take_pending()
        self._keys = (k.metrics_polls, k.metrics_latency, k.metrics_counters, k.metrics_recent)
        self._args = [self.outcome.value, bucket_of(self.elapsed), repr(round(self.elapsed, 6)),
                      f"{self.outcome.value} {host} {self.source.id}", str(RECENT_KEEP),
                      str(min(self.read_recent, RECENT_KEEP))]
        for name, n in self._taken.items():
            self._args += (name, str(n))
        # EVALSHA, not the Script object: in a pipeline that asks SCRIPT EXISTS first
        p.evalsha(self.recorder._poll_script.sha, len(self._keys), *self._keys, *self._args)

    def done(self, results: Sequence) -> None:
        """The queued script's result (an exception if it failed). A failure is a Redis
        error only this counts: the poll itself was stored."""
        (result,) = results
        if isinstance(result, redis.exceptions.NoScriptError):  # a new or flushed Redis
            try:
                result = self.recorder._poll_script(keys=self._keys, args=self._args)
            except redis.RedisError as e:
                result = e
        if isinstance(result, Exception):
            log.warning("metrics: Redis refused the counts of a poll of %s", self.source.id)
            self._keep_held(redis_error=True)
            return
        self.recent = result

    def lost(self) -> None:
        """The pipeline never reached Redis: the store call raises StoreError and whoever
        catches it counts the Redis error (runner.Worker._poll); this poll's own counts
        are lost, the held ones are kept for the next write."""
        self._keep_held(redis_error=False)

    def _keep_held(self, redis_error: bool) -> None:
        self.recorder._give_back(self._taken, redis_error)
        self._taken = {}


# --- reading: the /metrics collector ---------------------------------------------------------

FAILING = "failing"


def source_health(enabled: bool, state_fields: dict[str, str]) -> str:
    """ok / failing / disabled / new, from a source's stored state fields."""
    if not enabled or state_fields.get("disabled_reason"):
        return "disabled"
    status = state_fields.get("last_status")
    if not status:
        return "new"
    return "ok" if status in (Outcome.OK.value, Outcome.NOT_MODIFIED.value) else FAILING


class RedisCollector:
    """A prometheus_client collector over the shared counters. `sources` returns the
    configured sources (for the per-health gauges); `before_collect` lets the web process
    push its own held counts (output cache) first."""

    def __init__(self, client: Callable[[], redis.Redis], keys: Keys,
                 sources: Callable[[], Iterable[Source]],
                 before_collect: Callable[[], None] | None = None,
                 on_redis_error: Callable[[], None] | None = None):
        self._client = client
        self.keys = keys
        self._sources = sources
        self._before = before_collect
        self._on_error = on_redis_error

    def describe(self):
        return []  # no registration-time collect: Redis may not be up yet

    def collect(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)

        if self._before is not None:
            self._before()
        k = self.keys
        try:
            sources = list(self._sources())
        except Exception:  # an invalid feeds.yaml must not take the counters down with it
            log.exception("metrics: cannot read the sources")
            sources = []
        try:
            r = self._client()
            with r.pipeline(transaction=False) as p:
                p.hgetall(k.metrics_polls)
                p.hgetall(k.metrics_latency)
                p.hgetall(k.metrics_counters)
                p.hexists(k.alerts_open, "outage")
                for s in sources:
                    p.hmget(k.source_state(s.id), "last_status", "disabled_reason")
                rows = p.execute()
        except Exception as e:  # noqa: BLE001 - Redis down or a bad reply: still answer
            log.warning("metrics: Redis unavailable (%s)", e)
            if self._on_error is not None:
                self._on_error()
            yield GaugeMetricFamily("agg_redis_up", "1 when the web process reads Redis", 0)
            return
        yield GaugeMetricFamily("agg_redis_up", "1 when the web process reads Redis", 1)
        polls, latency, counters, outage, states = rows[0], rows[1], rows[2], rows[3], rows[4:]

        c = CounterMetricFamily("agg_polls", "Polls by outcome class", labels=["outcome"])
        for outcome in Outcome:
            c.add_metric([outcome.value], float(polls.get(outcome.value, 0)))
        yield c

        from prometheus_client.utils import floatToGoString

        buckets, running = [], 0
        for bound in LATENCY_BUCKETS:
            running += int(latency.get(f"{bound:g}", 0))
            buckets.append((floatToGoString(bound), running))
        running += int(latency.get("+Inf", 0))
        buckets.append(("+Inf", running))
        yield HistogramMetricFamily("agg_fetch_latency_seconds", "Time of one poll's fetch",
                                    buckets=buckets, sum_value=float(latency.get("sum", 0)))

        for field, (name, doc) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, value=float(counters.get(field, 0)))

        health = collections.Counter(
            source_health(s.enabled, dict(zip(("last_status", "disabled_reason"), st)))
            for s, st in zip(sources, states))
        g = GaugeMetricFamily("agg_sources", "Configured sources by health", labels=["health"])
        for h in ("ok", FAILING, "disabled", "new"):
            g.add_metric([h], health.get(h, 0))
        yield g
        yield GaugeMetricFamily("agg_sources_failing", "Enabled sources whose last poll failed",
                                health.get(FAILING, 0))
        yield GaugeMetricFamily("agg_outage", "1 while every source fails at once (our own "
                                "outage, aggregator/alerts.py)", 1 if outage else 0)


class CacheCounter:
    """Moves one process's cache counts (each cache's .hits and .renders: web/cache.py's
    feed outputs, web/pagecache.py's pages) into Redis every `every` seconds from a daemon
    thread, and on demand before a scrape. The thread starts on first use in each process:
    gunicorn forks after create_app, and threads do not survive a fork."""

    def __init__(self, caches: Callable[[], Mapping[str, object]], recorder: Recorder,
                 every: float = 5.0):
        self.caches = caches  # counter prefix ("cache", "page_cache") -> the cache, if made
        self.recorder = recorder
        self.every = every
        self._sent: dict[str, tuple[int, int]] = {}
        self._pid = None
        self._lock = threading.Lock()

    def flush(self) -> None:
        with self._lock:
            for prefix, cache in self.caches().items():
                hits, renders = cache.hits, cache.renders
                sent_hits, sent_renders = self._sent.get(prefix, (0, 0))
                self.recorder.count(f"{prefix}_hits", hits - sent_hits)
                self.recorder.count(f"{prefix}_renders", renders - sent_renders)
                self._sent[prefix] = (hits, renders)
        self.recorder.flush()

    def running_here(self) -> bool:
        return self._pid == os.getpid()

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._run, name="metrics-cache", daemon=True).start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.every):
            try:
                self.flush()
            except Exception:  # never let metrics take a web process down
                log.exception("metrics: cache counter flush failed")
