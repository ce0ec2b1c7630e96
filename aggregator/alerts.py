"""Alerts, and telling our outage from the sources' failures.

An incident is alerted once and recovered once: a log line always, and a JSON POST to
AGG_ALERT_WEBHOOK when it is set. Incidents:
  source:<id>   a source has failed for longer than AGG_ALERT_AFTER (default 1h, counted
                from its failing_since), or a 410 disabled it (at once: it needs an edit);
                recovered by its next successful poll;
  outage        every source failing at once: the latest polls were all network-class
                failures (dns, connect, timeout) on at least 3 different hosts. That is our
                network (or DNS) down, not theirs: it is logged and alerted as one incident,
                per-source alerts are held back while it lasts, and the polls it fails are
                not held against each source's backoff (schedule.during_outage). Recovered
                by the first poll that hears any HTTP answer.

Incidents live in one Redis hash (keys.alerts_open); opening is HSETNX and recovering is
HDEL, so each happens once however many workers run, and a restart remembers what it has
already said. The webhook is called from a background thread with a 5 s timeout, through
the fetcher's SSRF guard (refused on loopback/private addresses unless
AGG_ALLOW_PRIVATE_NETWORKS=1), without following redirects: polling never waits for it.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import redis

from .keys import Keys
from .metrics import Recorder
from .settings import Settings
from .types import Outcome, PollReport, Source, SourceState

log = logging.getLogger(__name__)
UTC = timezone.utc

NETWORK = frozenset({Outcome.DNS.value, Outcome.CONNECT.value, Outcome.TIMEOUT.value})
OUTAGE_MIN_HOSTS = 3
OUTAGE_MAX_WINDOW = 10
DEFAULT_AFTER = timedelta(hours=1)
WEBHOOK_TIMEOUT = 5.0
SWEEP_EVERY = 30.0  # seconds between per-source threshold checks (less for a short threshold)
QUEUE_MAX = 200  # alerts waiting for the webhook; beyond that they are logged and dropped


# --- pure decisions -------------------------------------------------------------------------

def outage_window(enabled_sources: int) -> int:
    """How many of the latest polls must all have failed on the network: every source's
    worth for a small fleet, at most OUTAGE_MAX_WINDOW, never fewer than OUTAGE_MIN_HOSTS."""
    return min(OUTAGE_MAX_WINDOW, max(OUTAGE_MIN_HOSTS, enabled_sources))


def is_our_outage(recent: Sequence[str], window: int) -> bool:
    """`recent`: "outcome host source" of the latest polls, newest first (metrics.Recorder).
    True when the last `window` polls all failed with dns/connect/timeout and they were on
    at least OUTAGE_MIN_HOSTS different hosts (one outlet's three feeds down is theirs)."""
    last = [entry.split(" ") for entry in recent[:window]]
    if len(last) < max(window, OUTAGE_MIN_HOSTS):
        return False
    if any(parts[0] not in NETWORK for parts in last):
        return False
    return len({parts[1] for parts in last if len(parts) > 1}) >= OUTAGE_MIN_HOSTS


def outage_over(report: PollReport) -> bool:
    """A poll that heard an HTTP answer (any status) proves our network works again."""
    return report.http_status is not None or report.outcome.is_success


@dataclass(frozen=True)
class Decision:
    open: tuple[tuple[str, dict], ...]  # (incident key, alert payload)
    close: tuple[tuple[str, dict], ...]  # (incident key, recovery payload)
    forget: tuple[str, ...]  # incidents of sources no longer polled: dropped silently


def source_key(source_id: str) -> str:
    return f"source:{source_id}"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def source_payload(event: str, source: Source, state: SourceState, now: datetime) -> dict:
    failing_for = (now - state.failing_since).total_seconds() if state.failing_since else None
    if event == "source_failing":
        text = (f"source {source.id} has been failing for {_human(failing_for)} "
                f"({state.last_status}{' ' + str(state.last_http_status) if state.last_http_status else ''}"
                f"{': ' + state.last_error if state.last_error else ''})")
    elif event == "source_disabled":
        text = f"source {source.id} disabled: {state.disabled_reason}"
    else:
        text = f"source {source.id} recovered ({state.last_status})"
    return {
        "event": event, "text": text, "source": source.id, "title": source.title,
        "url": source.url, "outcome": state.last_status, "http_status": state.last_http_status,
        "error": state.last_error, "failing_since": _iso(state.failing_since),
        "failing_for_s": round(failing_for) if failing_for is not None else None,
        "consecutive_failures": state.consecutive_failures,
        "disabled_reason": state.disabled_reason, "suggested_url": state.suggested_url,
        "at": _iso(now),
    }


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def decide(sources: Iterable[Source], states: dict[str, SourceState], open_keys: set[str],
           now: datetime, after: timedelta, outage: bool,
           quiet_before: datetime | None = None) -> Decision:
    """Which per-source incidents to open and which to recover (pure).

    `outage`: our own outage is open, so no source is newly blamed. `quiet_before`: when
    our last outage ended; a source not polled since then is not blamed yet (its
    failing_since may date from the polls that revealed the outage)."""
    to_open, to_close, live = [], [], set()
    for s in sources:
        if not s.enabled:
            continue
        key = source_key(s.id)
        live.add(key)
        st = states.get(s.id) or SourceState()
        if st.disabled_reason:
            if key not in open_keys:
                to_open.append((key, source_payload("source_disabled", s, st, now)))
            continue
        failing = st.last_status is not None and st.failing_since is not None and \
            st.consecutive_failures > 0
        if failing:
            fresh = quiet_before is None or (st.last_poll is not None and st.last_poll > quiet_before)
            if (key not in open_keys and not outage and fresh
                    and now - st.failing_since >= after):
                to_open.append((key, source_payload("source_failing", s, st, now)))
        elif key in open_keys and st.last_status is not None:
            to_close.append((key, source_payload("source_recovered", s, st, now)))
    forget = tuple(k for k in open_keys if k.startswith("source:") and k not in live)
    return Decision(tuple(to_open), tuple(to_close), forget)


def parse_after(value: str | None) -> timedelta:
    """AGG_ALERT_AFTER: '1h', '30m', '90s', '1h30m' or seconds; default 1h."""
    if not value:
        return DEFAULT_AFTER
    from .config import parse_interval

    return timedelta(seconds=parse_interval(value))


# --- the notifier ---------------------------------------------------------------------------

class Alerter:
    """Incident memory (Redis) and delivery (log line + webhook from a background thread)."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings,
                 webhook: str | None = None, after: timedelta = DEFAULT_AFTER,
                 metrics: Recorder | None = None):
        self.r = client
        self.keys = keys
        self.after = after
        self.metrics = metrics
        self.webhook = None
        if webhook:
            if urlsplit(webhook).scheme in ("http", "https") and urlsplit(webhook).hostname:
                self.webhook = webhook
            else:
                log.error("AGG_ALERT_WEBHOOK %r is not an http(s) URL; alerts go to the log only",
                          webhook)
        self._settings = settings
        self._pool = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, client: redis.Redis, keys: Keys, settings: Settings,
                 metrics: Recorder | None = None, env=None) -> "Alerter":
        env = os.environ if env is None else env
        try:
            after = parse_after(env.get("AGG_ALERT_AFTER"))
        except ValueError as e:
            log.error("AGG_ALERT_AFTER: %s; using the default %s", e, DEFAULT_AFTER)
            after = DEFAULT_AFTER
        return cls(client, keys, settings, webhook=env.get("AGG_ALERT_WEBHOOK") or None,
                   after=after, metrics=metrics)

    # incidents ---------------------------------------------------------------------------
    def open_incidents(self) -> dict[str, dict]:
        raw = self.r.hgetall(self.keys.alerts_open)
        out = {}
        for k, v in raw.items():
            try:
                out[k] = json.loads(v)
            except ValueError:
                out[k] = {}
        return out

    def open(self, key: str, payload: dict) -> bool:
        """Open an incident; alert only if it was not already open (any process)."""
        record = json.dumps({"since": payload.get("at"), "event": payload.get("event"),
                             "text": payload.get("text")}, ensure_ascii=False)
        if not self.r.hsetnx(self.keys.alerts_open, key, record):
            return False
        log.error("ALERT %s", payload["text"])
        self.send(payload)
        return True

    def resolve(self, key: str, payload: dict) -> bool:
        if not self.r.hdel(self.keys.alerts_open, key):
            return False
        log.warning("RECOVERED %s", payload["text"])
        self.send(payload)
        return True

    def forget(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.r.hdel(self.keys.alerts_open, *keys)

    # delivery ----------------------------------------------------------------------------
    def send(self, payload: dict) -> None:
        """Queue a webhook call; never blocks the caller."""
        if self.webhook is None:
            return
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            log.error("alert webhook backlog full; dropped: %s", payload.get("text"))
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                if payload is None:
                    return
                self.post(payload)
            finally:
                self._queue.task_done()

    def post(self, payload: dict) -> bool:
        """One webhook call (in the background thread): True on a 2xx answer."""
        import urllib3

        from .fetch import _pool_manager

        if self._pool is None:
            self._pool = _pool_manager(self._settings, 1)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            resp = self._pool.request(
                "POST", self.webhook, body=body, redirect=False, retries=False,
                timeout=urllib3.Timeout(total=WEBHOOK_TIMEOUT),
                headers={"Content-Type": "application/json; charset=utf-8",
                         "User-Agent": self._settings.user_agent},
            )
            ok = 200 <= resp.status < 300
            if not ok:
                log.error("alert webhook answered HTTP %s", resp.status)
        except Exception as e:  # blocked by the SSRF guard, unreachable, timed out
            log.error("alert webhook failed: %s: %s", type(e).__name__, e)
            ok = False
        if self.metrics is not None:
            self.metrics.count("alerts_sent" if ok else "alerts_failed")
            self.metrics.flush()
        return ok

    def close(self, timeout: float = WEBHOOK_TIMEOUT + 1) -> None:
        """Let queued alerts go out (bounded), then stop the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        thread.join(timeout)


# --- the monitor the poll path reports to -----------------------------------------------------

class Monitor:
    """Metrics for every poll, our-outage detection and its schedule, and alerts.

    Hooked into update_source through Pipeline.monitor (adjust before the state is saved,
    observe after), and into the worker's housekeeping (tick)."""

    def __init__(self, recorder: Recorder, alerter: Alerter | None = None,
                 enabled_sources: int = OUTAGE_MIN_HOSTS):
        self.metrics = recorder
        self.alerter = alerter
        self.enabled_sources = enabled_sources
        self.outage = False  # this process's view; the truth is the Redis incident
        self.outage_ended: datetime | None = None
        self._last_sweep = 0.0
        self._lock = threading.Lock()

    # the poll path ---------------------------------------------------------------------
    def adjust(self, source: Source, before: SourceState, after: SourceState,
               outcome: Outcome, now: datetime, rng) -> SourceState:
        """The state to save: after_poll's, unless our outage is on and this poll failed on
        the network (then it is not held against the source)."""
        if self.outage and outcome.value in NETWORK:
            from .schedule import during_outage

            return during_outage(source, before, after, now, rng)
        return after

    def poll_counts(self, source: Source, outcome, elapsed: float):
        """This poll's metrics, for Store.save_poll to send with the poll (metrics.PollCounts).
        Only a poll that failed on the network can complete an outage (is_our_outage looks
        at the newest polls, this one first), so only such a poll reads the latest outcomes
        back: most polls are 304s, and reading 50 entries back cost each of them ~25 us."""
        read = OUTAGE_MAX_WINDOW if outcome.value in NETWORK else 0
        return self.metrics.poll_counts(source, outcome, elapsed, read_recent=read)

    def observe(self, source: Source, report: PollReport, now: datetime, counts) -> None:
        """After the poll is saved with `counts` (from poll_counts)."""
        self.metrics.count("items_new", report.new)  # sent with the next poll's counts
        self.metrics.count("items_updated", report.updated)
        recent = counts.recent
        try:
            if not self.outage and is_our_outage(recent, outage_window(self.enabled_sources)):
                self._outage_started(recent, now)
            elif self.outage and outage_over(report):
                self._outage_ended(source, report, now)
        except (redis.RedisError, OSError) as e:
            self.metrics.redis_error()
            log.warning("alerts: Redis unavailable (%s)", e)

    def _outage_started(self, recent: Sequence[str], now: datetime) -> None:
        with self._lock:
            if self.outage:
                return
            self.outage = True
        window = recent[:outage_window(self.enabled_sources)]
        hosts = sorted({e.split(" ")[1] for e in window if len(e.split(" ")) > 1})
        outcomes = sorted({e.split(" ")[0] for e in window})
        payload = {
            "event": "outage", "at": _iso(now), "outcomes": outcomes, "hosts": hosts,
            "text": f"every source is failing at once: the last {len(window)} polls on "
                    f"{len(hosts)} hosts failed with {'/'.join(outcomes)}; treating it as our "
                    "own network outage (sources are not backed off for it)",
        }
        if self.alerter is not None:
            self.alerter.open("outage", payload)
        else:
            log.error("OUTAGE %s", payload["text"])

    def _outage_ended(self, source: Source, report: PollReport, now: datetime) -> None:
        with self._lock:
            if not self.outage:
                return
            self.outage = False
            self.outage_ended = now
        payload = {"event": "outage_recovered", "at": _iso(now), "source": source.id,
                   "text": f"network outage over: {source.id} answered "
                           f"({report.outcome.value} {report.http_status or ''})".rstrip()}
        if self.alerter is not None:
            self.alerter.resolve("outage", payload)
        else:
            log.warning("RECOVERED %s", payload["text"])

    def grouped(self, assignments) -> None:
        self.metrics.grouped(assignments)

    def redis_error(self) -> None:
        self.metrics.redis_error()

    # housekeeping ----------------------------------------------------------------------
    def tick(self, store, sources: Sequence[Source], now: datetime, force: bool = False) -> None:
        """From the worker's housekeeping (every 5 s): push held counts, follow the outage
        flag other workers may have set or cleared, and every SWEEP_EVERY seconds check each
        source against the alert threshold. Raises on Redis errors (housekeeping logs it)."""
        self.metrics.flush()
        if self.alerter is None:
            return
        self.enabled_sources = sum(1 for s in sources if s.enabled)
        shared = bool(self.alerter.r.hexists(self.alerter.keys.alerts_open, "outage"))
        if shared != self.outage:
            with self._lock:
                if self.outage and not shared:
                    self.outage_ended = now
                self.outage = shared
        every = min(SWEEP_EVERY, self.alerter.after.total_seconds() / 4)
        if not force and time.monotonic() - self._last_sweep < every:
            return
        self._last_sweep = time.monotonic()
        enabled = [s for s in sources if s.enabled]
        states = store.load_states([s.id for s in enabled]) if enabled else {}
        open_keys = set(self.alerter.open_incidents())
        d = decide(enabled, states, open_keys, now, self.alerter.after, self.outage,
                   self.outage_ended)
        for key, payload in d.open:
            self.alerter.open(key, payload)
        for key, payload in d.close:
            self.alerter.resolve(key, payload)
        self.alerter.forget(d.forget)

    def close(self) -> None:
        self.metrics.flush()
        if self.alerter is not None:
            self.alerter.close()
