"""update_source(): the story of one update, step by step.

load state → conditional fetch → parse → normalise → store (one transaction, with the
schedule) → group → outputs invalidated (the store and grouper bump outputs_version).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from datetime import datetime

from .errors import ParseError, StoreError
from .fetch import Fetcher
from .normalize import normalize_feed
from .parse import parse_feed
from .schedule import after_poll
from .store import Store
from .types import FetchResult, Item, Outcome, PollReport, Source, SourceState

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """What one update needs; built once per process and shared by every poll."""

    store: Store
    fetcher: Fetcher
    grouper: object | None = None  # aggregator.group.Grouper; None skips grouping
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True)
class Fetched:
    result: FetchResult
    outcome: Outcome  # the fetch outcome, or not-a-feed when the body did not parse
    items: list[Item]
    error: str | None


def fetch_items(source: Source, state: SourceState, fetcher: Fetcher, now: datetime) -> Fetched:
    """Conditional fetch → parse → normalise, with no writes."""
    result = fetcher.fetch(source.url, state, now)
    if result.outcome is not Outcome.OK:
        return Fetched(result, result.outcome, [], result.error)
    try:
        feed = parse_feed(result.body, result.headers, result.final_url)
    except ParseError as e:
        return Fetched(result, Outcome.NOT_A_FEED, [], str(e)[:500])
    return Fetched(result, Outcome.OK, normalize_feed(source, feed, first_seen=now, now=now), None)


def update_source(source: Source, pipe: Pipeline, now: datetime) -> PollReport:
    state = pipe.store.load_state(source.id)
    fetched = fetch_items(source, state, pipe.fetcher, now)
    new_state = after_poll(source, state, fetched.result, now, pipe.rng, outcome=fetched.outcome)
    if fetched.error:
        new_state = replace(new_state, last_error=fetched.error)
    saved = pipe.store.save_poll(source, fetched.items, new_state, now)
    if pipe.grouper is not None and saved.new:
        try:
            pipe.grouper.process_pending(now)
        except StoreError:
            raise  # Redis trouble is the worker's to retry, not a grouping bug
        except Exception:  # the items stay pending and are grouped on the next pass
            log.exception("grouping failed after polling %s", source.id)
    if not fetched.outcome.is_success:
        log.warning("%s: %s (%s)", source.id, fetched.outcome.value, fetched.error)
    return PollReport(
        source=source.id, outcome=fetched.outcome, http_status=fetched.result.http_status,
        new=len(saved.new), updated=len(saved.updated), seen=len(fetched.items),
        elapsed=fetched.result.elapsed, next_poll=new_state.next_poll, error=fetched.error,
    )
