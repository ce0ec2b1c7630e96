"""The worker: APScheduler decides when, a bounded pool polls, Redis remembers.

Each enabled source is one date-triggered job whose run time is the source's stored
`next_poll`; after every poll the job re-arms itself from the new state. A restart reads
the stored times back, so it resumes instead of re-polling everything at once.
"""
from __future__ import annotations

import gc
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor as Pool
from concurrent.futures import as_completed
from dataclasses import fields, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit
from uuid import uuid4

import redis
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .alerts import Alerter, Monitor
from .config import Config, ConfigWatcher, Rejected, load_config_or_last_good
from .embedded import revive
from .errors import StoreError
from .fetch import Fetcher
from .keys import Keys
from .metrics import Recorder
from .helpers import Helper
from .parsepool import ParsePool
from .schedule import for_url, initial_poll, skip_reason
from .settings import Settings
from .store import Store, connect, open_store
from .types import Outcome, PollReport, Source, SourceState
from .update import Pipeline, update_source

log = logging.getLogger(__name__)
UTC = timezone.utc
STORE_RETRY = (5, 300)  # Redis unreachable: retry a poll after 5 s, doubling up to 5 min
# The one-polling-worker lock: held while renewed (housekeeping, every 5 s); a worker that
# died on another host frees it this long after.
LOCK_TTL = 30


def _gone_here(holder: str) -> bool:
    """Whether a lock holder ("host pid token") was a process of this host that is gone:
    a worker killed with -9 and restarted takes over at once, not 30 s later."""
    host, _, rest = holder.partition(" ")
    if host != socket.gethostname():
        return False
    try:
        pid = int(rest.split(" ")[0])
        if pid == os.getpid():  # our own pid under another token: a restarted container
            return True
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):
        return False
    return False


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_pipeline(settings: Settings, store: Store | None = None) -> Pipeline:
    store = store or open_store(settings)
    fetcher = Fetcher.for_polls(settings)
    parser = ParsePool(settings.parse_processes, settings) if settings.parse_processes else None
    return Pipeline(store=store, fetcher=fetcher, parser=parser,
                    monitor=build_monitor(store, settings))


def build_monitor(store: Store, settings: Settings) -> Monitor:
    """Shared metrics, alerts (AGG_ALERT_WEBHOOK, AGG_ALERT_AFTER) and outage detection."""
    recorder = Recorder(store.r, store.keys)
    return Monitor(recorder, Alerter.from_env(store.r, store.keys, settings, metrics=recorder))


def startup_config(settings: Settings, store: Store | None = None,
                   now: Callable[[], datetime] = utcnow, keep: bool = True
                   ) -> tuple[Config, Rejected | None]:
    """feeds.yaml, kept in Redis as the last good config (unless not `keep`: a dry run
    writes nothing); or, while the file does not validate, the last good config, with the
    file's problems logged. Raises ConfigError when the file is invalid and no valid one
    was ever kept."""
    store = store or open_store(settings)
    config, rejected = load_config_or_last_good(
        settings.feeds_path, lambda: store.last_good_config(settings.feeds_path))
    if rejected:
        for problem in rejected.problems:
            log.error("%s", problem)
        log.error("%s: %d problem(s); running the last good config (%d sources) until it "
                  "is fixed", rejected.path, len(rejected.problems), len(config.sources))
    elif keep:
        store.keep_good_config(config, now())
    return config, rejected


def make_grouper(store: Store, sources: Iterable[Source]):
    return _grouper(store.r, store.keys, sources)


def _grouper(client, keys: Keys, sources: Iterable[Source]):
    from .group import Grouper

    return Grouper(client, keys, source_rank={s.id: s.rank for s in sources})


def make_grouping(settings: Settings, pipe: Pipeline, sources: Iterable[Source],
                  now: Callable[[], datetime] = utcnow) -> GroupingLoop | GroupingProcess:
    if settings.grouping_process:
        return GroupingProcess(settings, sources)
    return GroupingLoop(make_grouper(pipe.store, sources), now, pipe.monitor)


class SurvivorFreezer:
    """After each batch, moves what survived it out of the garbage collector's sight; for
    a process that only groups (the grouping process, bench/grouping_cost.py).

    The grouper's working set is ~200,000 long-lived containers (postings, documents,
    stories) with no reference cycles among them. Every full collection walked all of them,
    0.14-0.16 s once per ~2,500 items: 50-70 us of the ~0.6 ms an item cost then. Young
    garbage is collected first, so only survivors are frozen; frozen objects are still
    freed by reference counting when the window drops them (over 20,000 items, two window
    turnovers, the frozen count stayed at the working set's size and peak RSS at 245 MB,
    as without freezing). A full collection every FULL_EVERY batches bounds whatever cyclic
    garbage froze meanwhile."""

    FULL_EVERY = 200

    def __init__(self):
        self.batches = 0

    def after_batch(self) -> None:
        self.batches += 1
        if self.batches % self.FULL_EVERY == 0:
            gc.unfreeze()
            gc.collect()
        else:
            gc.collect(1)
        gc.freeze()


class GroupingLoop:
    """The one consumer of the grouping queue in this process.

    Polls only enqueue (in their store transaction) and wake it; it drains the queue in
    batches, oldest published first. Across processes the grouper's own Redis lock keeps
    a single writer. Every WAKE_EVERY seconds it also looks without being woken, which
    picks up items a crash left queued.
    """

    BATCH = 500
    WAKE_EVERY = 5.0
    # Seconds a wake waits before draining, so that a burst of polls (a cold start, a
    # restart) is grouped in fewer, larger batches: a batch's Redis work is mostly per
    # story it touches, not per item. A cold pass of 500 clone feeds (bench/ingest.py)
    # took 0.88-0.98x as long (4 interleaved pairs), with up to this much more latency.
    GATHER = 0.2

    def __init__(self, grouper, now: Callable[[], datetime] = utcnow,
                 monitor: Monitor | None = None, freezer: SurvivorFreezer | None = None):
        self.grouper = grouper  # replaced whole when the config (outlet ranking) changes
        self.now = now
        self.monitor = monitor  # counts stories formed and Redis errors
        self.freezer = freezer  # in the grouping process only: it owns the whole heap
        self._wake = threading.Event()

    def notify(self) -> None:
        self._wake.set()

    def set_sources(self, sources: Iterable[Source]) -> None:
        """A new config: the outlet ranking breaks lead ties (a fresh grouper reloads)."""
        self.grouper = _grouper(self.grouper.r, self.grouper.keys, sources)

    def drain(self) -> int:
        total = 0
        while True:
            done = self.grouper.process_pending(self.now(), limit=self.BATCH)
            total += len(done)
            if self.freezer is not None and done:
                self.freezer.after_batch()
            if self.monitor is not None:
                self.monitor.grouped(done)
            if len(done) < self.BATCH:
                return total

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.drain()  # first thing at start too: a crash may have left items queued
                failures = 0
            except (StoreError, redis.RedisError) as e:
                failures += 1
                if self.monitor is not None:
                    self.monitor.redis_error()
                delay = min(STORE_RETRY[0] * 2 ** (failures - 1), STORE_RETRY[1])
                log.error("grouping: Redis unavailable (%s); retrying in %ss", e, delay)
                stop.wait(delay)
            except Exception:  # a bug must not stop ingest; the items stay queued
                log.exception("grouping failed; the items stay queued")
                stop.wait(self.WAKE_EVERY)
            self._wake.wait(self.WAKE_EVERY)
            stop.wait(self.GATHER)
            self._wake.clear()
        self.drain_quietly()

    def drain_quietly(self) -> None:
        """The last pass before exit. A grouper killed mid-batch leaves its lock for up to
        its TTL, and process_pending then returns nothing: wait that long for the queue to
        empty, so `--once` does not exit with items ungrouped."""
        from .group import LOCK_TTL_MS

        deadline = time.monotonic() + LOCK_TTL_MS / 1000 + 2
        try:
            while True:
                self.drain()
                g = self.grouper
                if not g.r.zcard(g.keys.group_pending) or time.monotonic() > deadline:
                    return
                time.sleep(0.5)
        except Exception:
            log.exception("final grouping pass failed; the items stay queued")

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="grouping", daemon=True)
        thread.start()
        return thread


def _grouping_main(conn, settings: Settings, sources: list[Source], log_level: int) -> None:
    """The grouping process: GroupingLoop.run over its own Redis connection, woken through
    `conn` (a new source list when the config changes). End-of-file, when the worker stops
    it or ends, stops it after a last pass over what is queued."""
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = open_store(settings)
    loop = GroupingLoop(make_grouper(store, sources), monitor=Recorder(store.r, store.keys),
                        freezer=SurvivorFreezer())
    stop = threading.Event()

    def listen() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                stop.set()
                loop.notify()
                return
            if message != "wake":
                loop.set_sources(message)
            loop.notify()

    threading.Thread(target=listen, name="grouping-pipe", daemon=True).start()
    loop.run(stop)


class GroupingProcess:
    """GroupingLoop in a process of its own (AGG_GROUPING_PROCESS), so that grouping and
    the polls' fetch and store use two cores instead of taking turns at one GIL: in a cold
    start of 500 feeds grouping was most of the worker's CPU. Same interface as
    GroupingLoop. A grouping process that dies is started again; the queue is in Redis,
    so nothing is lost meanwhile. How it starts, ends and takes signals: helpers.py."""

    RESTART_AFTER = 5.0  # seconds: a process that dies at once must not spin

    def __init__(self, settings: Settings, sources: Iterable[Source]):
        self.settings = settings
        self._sources = list(sources)
        self._lock = threading.Lock()
        self._helper: Helper | None = None
        self.pid: int | None = None  # of the grouping process now running (ps, kill)

    def notify(self) -> None:
        self._send("wake")

    def set_sources(self, sources: Iterable[Source]) -> None:
        self._sources = list(sources)
        self._send(self._sources)

    def _send(self, message) -> None:
        with self._lock:
            if self._helper is not None:
                try:
                    self._helper.conn.send(message)
                except OSError:
                    pass  # the process has died: the supervisor starts another

    def _spawn(self) -> Helper:
        helper = Helper(_grouping_main, (self.settings, self._sources,
                                         logging.getLogger().getEffectiveLevel()),
                        name="grouping")
        with self._lock:
            self._helper = helper
        self.pid = helper.pid
        return helper

    def start(self, stop: threading.Event) -> threading.Thread:
        """Start the process and a thread that keeps it running until `stop`, then lets
        it finish its last pass. Join the thread to wait for that."""
        helper = self._spawn()

        def supervise() -> None:
            nonlocal helper
            while not stop.wait(1.0):
                if helper.process.exitcode is not None:
                    log.error("grouping process ended (exit code %s); starting another",
                              helper.process.exitcode)
                    helper.stop()
                    stop.wait(self.RESTART_AFTER)
                    helper = self._spawn()
            with self._lock:
                self._helper = None
            helper.stop(timeout=None)  # end-of-file: the last pass, then it exits

        thread = threading.Thread(target=supervise, name="grouping-supervisor", daemon=True)
        thread.start()
        return thread


class HostLimiter:
    """At most `limit` polls at once against one host, however large the pool."""

    def __init__(self, limit: int):
        self._sems: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(limit))
        self._lock = threading.Lock()

    def __call__(self, url: str) -> threading.BoundedSemaphore:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            return self._sems[host]


def poll_once(sources: list[Source], pipe: Pipeline, settings: Settings,
              grouping: GroupingLoop | GroupingProcess | None = None,
              now: Callable[[], datetime] = utcnow,
              states: Mapping[str, SourceState] | None = None) -> Iterator[PollReport]:
    """Poll every source once, concurrently, grouping as items arrive; yield reports as
    they complete. Returns once every new item is grouped. `states`: the sources' states
    if the caller has just read them (one pipelined read otherwise)."""
    limiter = HostLimiter(settings.per_host_limit)
    if states is None:
        states = pipe.store.load_states([s.id for s in sources])
    stop = threading.Event()
    thread = None
    if grouping is not None:
        pipe.notify_grouping = grouping.notify
        thread = grouping.start(stop)

    def one(source: Source) -> PollReport:
        with limiter(source.url):
            try:
                return update_source(source, pipe, now(), states[source.id])
            except (StoreError, redis.RedisError) as e:
                return PollReport(source.id, Outcome.ERROR, None, error=f"store: {e}")

    try:
        with Pool(max_workers=settings.pool_size) as pool:
            futures = [pool.submit(one, s) for s in sources]
            for future in as_completed(futures):
                yield future.result()
    finally:
        stop.set()
        if thread is not None:
            grouping.notify()
            thread.join()  # run() ends with a full drain


class Worker:
    def __init__(self, settings: Settings, config: Config | None = None,
                 now: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.now = now
        # The config first: an invalid feeds.yaml must fail before the parse pool starts.
        store = open_store(settings)
        rejected = None
        if config is None:
            config, rejected = startup_config(settings, store, now=now)
        self.config = config
        self.watcher = ConfigWatcher(settings.feeds_path, on_change=self._edited, log=log,
                                     initial=self.config, rejected=rejected)
        self.pipe = build_pipeline(settings, store)
        self.monitor = self.pipe.monitor
        self.grouping = make_grouping(settings, self.pipe, self.config.sources, now)
        self.pipe.notify_grouping = self.grouping.notify
        self._stop = threading.Event()
        # APScheduler's shutdown(wait=True) holds its job-store lock while it waits for
        # running jobs, and a finishing poll re-arms itself with add_job, which needs that
        # lock: a deadlock. Jobs touch the scheduler only under this lock, and not at all
        # once stop() has begun; the stored next_poll is where the next start resumes.
        self._jobs_lock = threading.Lock()
        self._stopping = False
        self.sources: dict[str, Source] = {}
        self.holder = f"{socket.gethostname()} {os.getpid()} {uuid4().hex[:8]}"
        self._applied = False  # the first apply_config is the start, not an edit
        self.limiter = HostLimiter(settings.per_host_limit)
        self.rng = random.Random()
        # Per source: polls failing together during one Redis outage must not push each
        # other's retries out (a shared count made a 6 s outage cost some sources 5 min).
        self._store_failures: dict[str, int] = defaultdict(int)
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(settings.pool_size)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    # config -------------------------------------------------------------------------
    def _edited(self, config: Config) -> None:
        """A valid edit of feeds.yaml: keep it as the last good config, then apply it."""
        self.pipe.store.keep_good_config(config, self.now())
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        """Start new sources, stop removed or disabled ones, pick up changed ones."""
        wanted = {s.id: s for s in config.sources if s.enabled}
        for sid in set(self.sources) - set(wanted):
            self._unschedule(sid)
            log.info("source %s stopped (removed or disabled in %s)", sid, config.path)
        states = self.pipe.store.load_states(list(wanted))
        now = self.now()
        # At start-up spread the first polls; a source added by a live edit starts now.
        spread = 10.0 if not self.sources else 0.0
        for sid, source in wanted.items():
            old = self.sources.get(sid)
            changed = [] if old is None else [f.name for f in fields(Source)
                                              if getattr(old, f.name) != getattr(source, f.name)]
            if old is not None and set(changed) <= {"rank"}:
                # unchanged, or moved in the file: a rank orders outlets for grouping only
                self.sources[sid] = source
                continue
            state = for_url(source, states[sid])
            if old is None and self._applied and state.disabled_reason:
                # added or enabled again by a live edit: the operator asks to try it again
                state = replace(state, disabled_reason=None, next_poll=None)
                self.pipe.store.save_state(sid, state)
                log.info("source %s: its 410 Gone verdict is cleared (added or enabled "
                         "again)", sid)
            when = initial_poll(source, state, now, self.rng, spread)
            if old is not None and old.interval != source.interval and state.next_poll:
                when = min(state.next_poll, now + timedelta(seconds=source.interval))
                if state.retry_after_until is not None:  # a shorter interval never undercuts
                    when = max(when, state.retry_after_until)  # what the server asked
            self.sources[sid] = source
            if when is None:
                log.warning("source %s is disabled: %s", sid, state.disabled_reason)
                continue
            self._schedule(sid, when)
            log.info("source %s %s, next poll %s", sid,
                     f"changed ({', '.join(changed)})" if old else "started",
                     when.isoformat(timespec="seconds"))
        self.config = config
        self._applied = True
        self.monitor.enabled_sources = len(wanted)
        self.grouping.set_sources(config.sources)

    def _schedule(self, source_id: str, when: datetime) -> None:
        with self._jobs_lock:
            if self._stopping:
                return
            self.scheduler.add_job(self._poll, "date", run_date=when, args=[source_id],
                                   id=f"poll:{source_id}", replace_existing=True)

    def _unschedule(self, source_id: str) -> None:
        self.sources.pop(source_id, None)
        with self._jobs_lock:
            job = None if self._stopping else self.scheduler.get_job(f"poll:{source_id}")
            if job:
                job.remove()
        self.pipe.store.forget_schedule(source_id)

    # jobs ---------------------------------------------------------------------------
    def _poll(self, source_id: str) -> None:
        source = self.sources.get(source_id)
        if source is None:
            return
        try:
            with self.limiter(source.url):
                report = update_source(source, self.pipe, self.now())
            self._store_failures.pop(source_id, None)
        except (StoreError, redis.RedisError) as e:
            self._store_failures[source_id] += 1
            self.monitor.redis_error()
            failures = self._store_failures[source_id]
            delay = min(STORE_RETRY[0] * 2 ** (failures - 1), STORE_RETRY[1])
            log.error("Redis unavailable while polling %s (%s); retrying in %ss",
                      source_id, e, delay)
            self._schedule(source_id, self.now() + timedelta(seconds=delay))
            return
        except Exception:
            log.exception("poll of %s crashed; retrying at its interval", source_id)
            self._schedule(source_id, self.now() + timedelta(seconds=source.interval))
            return
        # one line per poll; a failed one (its error included) at WARNING
        log.log(logging.INFO if report.outcome.is_success else logging.WARNING, "%s",
                format_report(report))
        if report.next_poll is None:
            log.error("source %s disabled after %s: edit feeds.yaml", source_id,
                      report.outcome.value)
            return
        current = self.sources.get(source_id)
        if current is None:
            return  # removed while it was polled
        when = report.next_poll
        # Edited while this poll ran (apply_config's own job for it was skipped: one run
        # at a time): the poll's schedule belongs to the old settings.
        if current.url != source.url:
            when = self.now()  # the new address, now
        elif current.interval < source.interval and report.outcome.is_success:
            when = min(when, self.now() + timedelta(seconds=current.interval))
        self._schedule(source_id, when)

    def take_lock(self, stopping: Callable[[], bool], sleep: Callable[[float], object]) -> bool:
        """Wait until this is the store's one polling worker; False if told to stop first.
        A second `run` or worker.py on the same store would fetch every feed twice."""
        warned = False
        while not stopping():
            holder = self.pipe.store.claim_worker_lock(self.holder, LOCK_TTL)
            if holder is None:
                if warned:
                    log.info("the other worker stopped; this one takes over")
                return True
            if holder and _gone_here(holder):
                self.pipe.store.release_worker_lock(holder)
                log.info("the last worker (%s) is gone; taking over", holder)
                continue
            if not warned:
                log.warning("another worker is polling this store (%s); waiting until it "
                            "stops (up to %d s after it does)", holder, LOCK_TTL)
                warned = True
            sleep(5)
        return False

    def _renew_lock(self) -> None:
        store = self.pipe.store
        if store.renew_worker_lock(self.holder, LOCK_TTL):
            return
        holder = store.claim_worker_lock(self.holder, LOCK_TTL)  # expired: a long stall
        if holder is not None:
            log.error("another worker (%s) took over while this one stalled: both are "
                      "polling; stop one", holder)

    def _housekeeping(self) -> None:
        now = self.now()
        try:
            self._renew_lock()
            self.pipe.store.heartbeat(now)
            self.watcher.check()
            self.monitor.tick(self.pipe.store, list(self.sources.values()), now)
        except (StoreError, redis.RedisError) as e:
            self.monitor.redis_error()
            log.error("housekeeping: Redis unavailable: %s", e)
            self._revive_embedded()

    def _revive_embedded(self) -> None:
        """The worker owns the embedded server: if it died, start it again (its AOF holds
        the data); nothing else would, and every poll and page would wait on it. A server
        at REDIS_URL is its operator's to restart."""
        if self.settings.redis_url:
            return
        try:
            if revive(self.settings.data_dir):
                log.warning("embedded Redis under %s was gone; started it again",
                            self.settings.data_dir)
        except StoreError as e:
            log.error("%s", e)

    def _retention(self) -> None:
        s = self.settings
        from .group import LockBusy

        try:
            now, grouper = self.now(), make_grouper(self.pipe.store, [])
            dropped = self.pipe.store.trim(now, timedelta(days=s.retention_days),
                                           s.retention_max_items,
                                           before_drop=lambda ids: grouper.forget(ids, now=now))
            if dropped:
                log.info("retention dropped %d items", dropped)
        except LockBusy as e:
            log.warning("retention: %s", e)
        except (StoreError, redis.RedisError) as e:
            self.monitor.redis_error()
            log.error("retention: Redis unavailable: %s", e)

    # lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._grouping_thread = self.grouping.start(self._stop)
        self.scheduler.start()
        self.apply_config(self.config)
        self.scheduler.add_job(self._housekeeping, "interval", seconds=5, id="housekeeping",
                               next_run_time=self.now())
        self.scheduler.add_job(self._retention, "interval", hours=1, id="retention",
                               next_run_time=self.now() + timedelta(minutes=1))
        log.info("worker started with %d sources", len(self.sources))

    def stop(self) -> None:
        """Finish in-flight polls, then stop; their results are stored before we exit."""
        log.info("stopping: waiting for in-flight polls")
        with self._jobs_lock:
            self._stopping = True
        self.scheduler.shutdown(wait=True)
        self._stop.set()
        self.grouping.notify()
        self._grouping_thread.join(timeout=60)
        if self._grouping_thread.is_alive():
            log.warning("grouping did not finish within 60 s; the rest is grouped at the "
                        "next start")
        try:
            self.pipe.store.release_worker_lock(self.holder)
        except (StoreError, redis.RedisError):
            pass  # it expires by itself
        self.close()
        log.info("worker stopped")

    def close(self) -> None:
        """Flush metrics and end the parse processes: the end of stop(), and all there is
        to a worker built but never started (stopped while waiting for the lock)."""
        self.monitor.close()
        self.pipe.close()


def format_report(r: PollReport) -> str:
    status = r.outcome.value + (f" {r.http_status}" if r.http_status else "")
    # milliseconds: most polls take tens of them, which "0.02s" hid (a local feed read 0.00s)
    line = f"{r.source:<28} {status:<18} new {r.new:>4}  updated {r.updated:>3}  {r.elapsed * 1000:7.0f} ms"
    if r.error and not r.outcome.is_success:
        line += f"  {r.error[:120]}"
    return line


def run_once(settings: Settings, out=sys.stdout) -> int:
    """`worker.py --once`: one line per source; non-zero only if every source failed."""
    store = open_store(settings)
    config, _ = startup_config(settings, store)
    pipe = build_pipeline(settings, store)
    enabled = [s for s in config.sources if s.enabled]
    states = pipe.store.load_states([s.id for s in enabled])
    sources, now = [], utcnow()
    for s in enabled:
        reason = skip_reason(for_url(s, states[s.id]), now)
        if reason:  # a 410 verdict or a server's Retry-After binds one-off polls too
            print(f"{s.id:<28} skipped: {reason}", file=out, flush=True)
        else:
            sources.append(s)
    pipe.monitor.enabled_sources = len(sources)
    grouping = make_grouping(settings, pipe, config.sources)
    reports = []
    bar = None
    if out.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(sources), unit="feed", file=sys.stderr)
    for report in poll_once(sources, pipe, settings, grouping, states=states):
        reports.append(report)
        if bar is not None:
            bar.write(format_report(report))
            bar.update(1)
        else:
            print(format_report(report), file=out, flush=True)
    if bar is not None:
        bar.close()
    pipe.monitor.close()
    pipe.close()
    ok = sum(r.outcome.is_success for r in reports)
    print(f"{ok}/{len(reports)} sources ok, {sum(r.new for r in reports)} new items",
          file=out, flush=True)
    return 0 if ok or not reports else 1


class Shutdown:
    """SIGINT/SIGTERM → a plain attribute, polled by the main loop.

    The handler takes no lock: setting a threading.Event from a signal handler deadlocks
    when the signal lands while the main thread holds that Event's lock (inside wait()).
    """

    def __init__(self):
        self.requested = False

    def install(self) -> "Shutdown":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def run_forever(settings: Settings, shutdown: Shutdown, worker: Worker | None = None) -> None:
    """Run a worker (built here unless given) until shutdown; ConfigError from building it
    means there is no config to run."""
    worker = worker or Worker(settings)
    if not worker.take_lock(lambda: shutdown.requested, shutdown.sleep):
        worker.close()
        return
    worker.start()
    try:
        while not shutdown.requested:
            shutdown.sleep(1)
    finally:
        worker.stop()


def wait_for_redis(settings: Settings, shutdown: Shutdown) -> None:
    """Start-up when Redis is down: retry with backoff instead of crash-looping."""
    delay = 1.0
    while not shutdown.requested:
        try:
            connect(settings)
            return
        except StoreError as e:
            log.error("%s; retrying in %.0fs", e, delay)
            shutdown.sleep(delay)
            delay = min(delay * 2, 60)
