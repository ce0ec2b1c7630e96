"""Pure scheduling decisions: from one poll's outcome to the source's next state.

Nothing here reads a clock or does I/O: `now` and a random source come in, a new
SourceState goes out. The worker stores it and APScheduler fires at `next_poll`.
"""
from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta

from .types import FetchResult, Outcome, Source, SourceState

MAX_BACKOFF = timedelta(hours=6)  # a failing source is retried at least this often, forever
MAX_RETRY_AFTER = timedelta(hours=24)  # we honour a server's wait up to a day, never "never"
JITTER = 0.1  # ±10 %: sources sharing an interval drift apart instead of firing together


def jittered(seconds: float, rng: random.Random) -> timedelta:
    return timedelta(seconds=seconds * (1 + rng.uniform(-JITTER, JITTER)))


def backoff_delay(interval: int, failures: int) -> float:
    """interval × 2^(failures-1), capped: 1 failure → interval, 2 → 2×, 3 → 4× … ≤ 6 h."""
    if failures <= 0:
        return float(interval)
    return min(interval * 2.0 ** (failures - 1), MAX_BACKOFF.total_seconds())


def after_poll(
    source: Source,
    state: SourceState,
    result: FetchResult,
    now: datetime,
    rng: random.Random,
    outcome: Outcome | None = None,
) -> SourceState:
    """The state after a poll. `outcome` overrides result.outcome when parsing failed."""
    outcome = outcome or result.outcome
    common = dict(
        last_poll=now,
        last_status=outcome.value,
        last_http_status=result.http_status,
        polls=state.polls + 1,
        latency_ms=round(result.elapsed * 1000, 1),
        retry_after_until=None,
        # A success straight from the configured URL withdraws an earlier suggestion (the
        # redirect was undone); a failure says nothing about it.
        suggested_url=result.permanent_redirect or (
            None if outcome.is_success else state.suggested_url),
        url=source.url,
    )
    if outcome.is_success:
        return replace(
            state,
            **common,
            etag=result.etag or state.etag,
            last_modified=result.last_modified or state.last_modified,
            body_hash=result.body_hash or state.body_hash,
            last_success=now,
            last_error=None,
            consecutive_failures=0,
            failing_since=None,
            disabled_reason=None,  # a feed that answers again is no longer gone
            next_poll=now + jittered(source.interval, rng),
        )
    failures = state.consecutive_failures + 1
    failed = replace(
        state,
        **common,
        last_error=result.error or outcome.value,
        consecutive_failures=failures,
        failing_since=state.failing_since or now,
        errors=state.errors + 1,
    )
    if outcome is Outcome.GONE:
        return replace(
            failed,
            next_poll=None,
            disabled_reason=f"410 Gone at {now:%Y-%m-%d %H:%M} UTC: remove it from feeds.yaml "
                            "or fix its URL",
        )
    delay = jittered(backoff_delay(source.interval, failures), rng)
    next_poll = now + delay
    if result.retry_after is not None:
        wait_until = min(result.retry_after, now + MAX_RETRY_AFTER)
        # Never earlier than the server asked: jitter only ever adds.
        next_poll = max(next_poll, wait_until + timedelta(seconds=rng.uniform(0, 5)))
        failed = replace(failed, retry_after_until=wait_until)
    return replace(failed, next_poll=next_poll)


def initial_poll(source: Source, state: SourceState, now: datetime,
                 rng: random.Random, spread: float = 10.0) -> datetime | None:
    """When to poll a source the worker (re)starts with.

    A stored next poll in the future is kept (a restart resumes, it does not re-poll
    everything); an overdue or new source starts within `spread` seconds (capped by a tenth
    of its interval) so a fleet of feeds does not hit the network in the same second.
    """
    if state.disabled_reason:
        return None
    if state.next_poll is not None and state.next_poll > now:
        return state.next_poll
    return now + timedelta(seconds=rng.uniform(0, min(spread, source.interval / 10)))


def during_outage(source: Source, before: SourceState, failed: SourceState, now: datetime,
                  rng: random.Random) -> SourceState:
    """The state after a network-class failure (dns/connect/timeout) while every source is
    failing at once: our own outage (detected by aggregator.alerts), not the source's fault.

    `failed` is after_poll's answer. The poll stays on record (last_poll, last_status,
    last_error, polls, latency), but is not held against the source: its failure streak,
    failing_since and error count stay as they were before this poll, and the next poll
    comes at the delay the source had before it (its interval, for a healthy source), so
    every source is back within one interval of our recovery and none sits on a long
    backoff our outage caused.
    """
    delay = jittered(backoff_delay(source.interval, before.consecutive_failures), rng)
    return replace(
        failed,
        consecutive_failures=before.consecutive_failures,
        failing_since=before.failing_since,
        errors=before.errors,
        next_poll=now + delay,
    )


def skip_reason(state: SourceState, now: datetime) -> str | None:
    """Why a one-off poll (`worker.py --once`) must leave a source alone, or None."""
    if state.disabled_reason:
        return state.disabled_reason
    if state.retry_after_until is not None and state.retry_after_until > now:
        return f"Retry-After until {state.retry_after_until.isoformat(timespec='seconds')}"
    return None


def for_url(source: Source, state: SourceState) -> SourceState:
    """The state to use for `source`: one polled from another URL (feeds.yaml was edited)
    keeps its history but not its validators, backoff, Retry-After or 410 verdict."""
    if state.url is None or state.url == source.url:
        return state
    return replace(state, url=source.url, etag=None, last_modified=None, body_hash=None,
                   consecutive_failures=0, failing_since=None, retry_after_until=None,
                   disabled_reason=None, suggested_url=None, next_poll=None)
