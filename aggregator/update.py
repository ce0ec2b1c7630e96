"""update_source(): the story of one update, step by step.

load state → conditional fetch → parse → normalise → store (one transaction, with the
schedule and the grouping queue) → wake grouping → outputs invalidated (the store and the
grouper bump outputs_version).

Grouping is handed the new items through the `group_pending` queue written in the same
transaction as the items, and runs in one consumer per process (runner.GroupingLoop):
stories are decided one batch at a time, in published order, never by two polls racing
to start the same story.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import ParseError
from .fetch import Fetcher
from .normalize import normalize_feed
from .parse import parse_feed
from .schedule import after_poll, for_url
from .store import PreparedItems, Store, prepare_items
from .types import FetchResult, Item, Outcome, PollReport, Source, SourceState

if TYPE_CHECKING:
    from .alerts import Monitor
    from .parsepool import ParsePool


@dataclass
class Pipeline:
    """What one update needs; built once per process and shared by every poll."""

    store: Store
    fetcher: Fetcher
    notify_grouping: Callable[[], None] | None = None  # wakes the grouping consumer
    rng: random.Random = field(default_factory=random.Random)
    monitor: Monitor | None = None  # metrics, alerts, our-outage schedule (aggregator/alerts.py)
    parser: ParsePool | None = None  # fetches and reads in processes (parsepool.py); None: here

    def close(self) -> None:
        if self.parser is not None:
            self.parser.close()
        self.fetcher.close()


@dataclass(frozen=True)
class Fetched:
    result: FetchResult
    outcome: Outcome  # the fetch outcome, or not-a-feed when the body did not parse
    items: list[Item] | PreparedItems  # prepared when read in a ParsePool process
    error: str | None


def read_feed(source: Source, body: bytes, headers: Mapping[str, str], url: str,
              now: datetime) -> tuple[list[Item], Outcome, str | None]:
    """Parse → normalise one fetched body: (items, OK, None), or ([], NOT_A_FEED, why).
    Pure."""
    try:
        feed = parse_feed(body, headers, url)
    except ParseError as e:
        return [], Outcome.NOT_A_FEED, str(e)[:500]
    last_modified = next((v for k, v in headers.items() if k.lower() == "last-modified"), None)
    items = normalize_feed(source, feed, first_seen=now, now=now, last_modified=last_modified)
    return items, Outcome.OK, None


def fetch_items(source: Source, state: SourceState, fetcher: Fetcher, now: datetime,
                parser: ParsePool | None = None) -> Fetched:
    """Conditional fetch → parse → normalise, with no writes: here, or in one of the
    parser's processes."""
    if parser is not None:
        return parser.fetch_items(source, state, now)
    result = fetcher.fetch(source.url, state, now)
    if result.outcome is not Outcome.OK:
        return Fetched(result, result.outcome, [], result.error)
    items, outcome, error = read_feed(source, result.body, result.headers, result.final_url, now)
    return Fetched(result, outcome, items, error)


def fetch_and_read(fetcher: Fetcher, source: Source, state: SourceState, now: datetime) -> Fetched:
    """fetch_items in a ParsePool process. The worker gets back the items, ready for the
    store (PreparedItems), and what it schedules from (outcome, validators, Retry-After),
    not the body and headers it read."""
    fetched = fetch_items(source, state, fetcher, now)
    return replace(fetched, result=replace(fetched.result, body=None, headers={}),
                   items=prepare_items(fetched.items))


def update_source(source: Source, pipe: Pipeline, now: datetime,
                  state: SourceState | None = None) -> PollReport:
    """One poll. `state`: the source's stored state when the caller has already read it
    (poll_once reads every source's in one round trip)."""
    if state is None:
        state = pipe.store.load_state(source.id)
    state = for_url(source, state)
    fetched = fetch_items(source, state, pipe.fetcher, now, pipe.parser)
    new_state = after_poll(source, state, fetched.result, now, pipe.rng, outcome=fetched.outcome)
    if fetched.error:
        new_state = replace(new_state, last_error=fetched.error)
    if pipe.monitor is not None:  # during our own outage a failure is not the source's fault
        new_state = pipe.monitor.adjust(source, state, new_state, fetched.outcome, now, pipe.rng)
    counts = None if pipe.monitor is None else pipe.monitor.poll_counts(
        source, fetched.outcome, fetched.result.elapsed)
    saved = pipe.store.save_poll(source, fetched.items, new_state, now, also=counts)
    if saved.new and pipe.notify_grouping is not None:
        pipe.notify_grouping()
    report = PollReport(
        source=source.id, outcome=fetched.outcome, http_status=fetched.result.http_status,
        new=len(saved.new), updated=len(saved.updated), seen=len(fetched.items),
        elapsed=fetched.result.elapsed, next_poll=new_state.next_poll, error=fetched.error,
    )
    if pipe.monitor is not None:
        pipe.monitor.observe(source, report, now, counts)
    return report
