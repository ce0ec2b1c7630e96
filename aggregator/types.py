"""Plain data that flows through the pipeline. Frozen: every step returns new values.

All datetimes are aware UTC; they are converted once, at parse/normalise time.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class Outcome(str, enum.Enum):
    """Classification of one poll. Stored per source and counted in metrics."""

    OK = "ok"
    NOT_MODIFIED = "not-modified"  # 304, or 200 with a body identical to the last one
    DNS = "dns"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    TLS = "tls"
    HTTP_4XX = "http-4xx"
    HTTP_5XX = "http-5xx"
    RATE_LIMITED = "rate-limited"  # 429: we asked too often (a 503's Retry-After is honoured too)
    GONE = "gone"  # 410: the source is disabled and says so
    TOO_LARGE = "too-large"
    TOO_MANY_REDIRECTS = "too-many-redirects"
    NOT_A_FEED = "not-a-feed"
    BLOCKED = "blocked"  # SSRF guard refused the address
    PROTOCOL = "protocol"  # reset, truncated body, bad chunking
    ERROR = "error"  # anything we did not foresee; logged with a traceback

    @property
    def is_success(self) -> bool:
        return self in (Outcome.OK, Outcome.NOT_MODIFIED)


@dataclass(frozen=True)
class Source:
    id: str
    url: str
    title: str
    site: str | None = None
    language: str = "ar"
    country: str | None = None
    tags: tuple[str, ...] = ()
    interval: int = 600  # seconds
    enabled: bool = True
    rank: int = 0  # position in feeds.yaml: the operator's ranking of outlets (lower first)

    @property
    def outlet(self) -> str:
        """The outlet this feed belongs to. Feeds naming the same `site` (scheme, "www."
        and a trailing slash aside) are one outlet's sections: a story they all carry has
        one source, not one per feed. A feed without a site is an outlet of its own."""
        return outlet_key(self.site) or self.id


def outlet_key(site: str | None) -> str | None:
    """'https://www.bbc.com/arabic/' -> 'bbc.com/arabic'; None for no or no usable site."""
    if not site:
        return None
    try:
        parts = urlsplit(site.strip())
        host = (parts.hostname or "").removeprefix("www.")
    except ValueError:
        return None
    if not host:
        return None
    return host + parts.path.rstrip("/")


def article_key(url: str) -> str:
    """What identifies an article's link for showing it once: http and https of the same
    address are one article (CNN Arabic's feed lists some under both: 158 of its items in
    the ANT corpus)."""
    scheme, sep, rest = url.partition("://")
    return rest if sep and scheme.lower() in ("http", "https") else url


def one_per_article(reports: Iterable[T], url: Callable[[T], str | None]) -> list[T]:
    """The first report of each article: an outlet's article in several of its feeds (the
    same link, article_key) is one report. Reports without a link are all kept. Order is
    kept."""
    seen: set[str] = set()
    out = []
    for r in reports:
        link = url(r)
        link = article_key(link) if link else link
        if link and link in seen:
            continue
        if link:
            seen.add(link)
        out.append(r)
    return out


def _itself(m):
    return m


def story_reports(members: Sequence[T], lead_id: str, keep: T | None = None,
                  item: Callable[[T], Item] = _itself,
                  sources: Mapping[str, Source] | None = None) -> list[T]:
    """A story's reports as every output lists them: one per article (one_per_article),
    oldest first, and among reports of the same moment the lead (lead_id: the grouper's
    choice, by the operator's ranking of outlets) first, then the others by that ranking
    (Source.rank of `sources`, by source id; unknown sources last). Of an article in several
    feeds the copy kept is `keep`'s, by default the lead's (the first member when the lead
    is gone). `item`: the Item of a member (members are Items by default)."""
    if keep is None and members:
        keep = next((m for m in members if item(m).id == lead_id), members[0])
    sources = sources or {}

    def rank(source_id: str) -> int:
        src = sources.get(source_id)
        return src.rank if src is not None else 1 << 20

    ordered = sorted(members, key=lambda m: (item(m).published, item(m).id != lead_id,
                                             rank(item(m).source)))
    first = [keep] if keep is not None else []
    kept = {id(m) for m in one_per_article([*first, *ordered], lambda m: item(m).url)}
    return [m for m in ordered if id(m) in kept]


@dataclass(frozen=True)
class SourceState:
    """What we remember about a source between polls (a Redis hash)."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_poll: datetime | None = None
    last_success: datetime | None = None
    last_status: str | None = None  # Outcome value
    last_http_status: int | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None
    errors: int = 0  # total failed polls
    polls: int = 0
    next_poll: datetime | None = None
    retry_after_until: datetime | None = None
    disabled_reason: str | None = None  # e.g. "410 Gone at ..."
    suggested_url: str | None = None  # target of a permanent redirect
    latency_ms: float | None = None
    url: str | None = None  # the URL this state was polled from (an edit of it resets)


@dataclass(frozen=True)
class FetchResult:
    outcome: Outcome
    url: str  # the URL we asked for
    final_url: str  # after redirects
    http_status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    retry_after: datetime | None = None
    permanent_redirect: str | None = None  # where a 301/308 chain pointed
    elapsed: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class EntryData:
    """One entry as the parser saw it: raw strings, nothing normalised yet."""

    guid: str | None
    link: str | None
    title: str | None
    summary: str | None  # HTML or text as published
    content: str | None  # full content (content:encoded, atom:content) if any
    published: str | None  # the original date string
    updated: str | None
    author: str | None
    categories: tuple[str, ...] = ()
    image: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class FeedData:
    title: str | None
    link: str | None
    language: str | None
    entries: tuple[EntryData, ...]
    bozo: str | None = None  # the parser's complaint, if the feed was not well-formed


@dataclass(frozen=True)
class Item:
    id: str  # stable: derived from source + guid / canonical link / title+date
    source: str
    url: str | None  # canonical link
    guid: str | None
    title: str  # plain text
    summary_html: str  # sanitised
    summary_text: str
    published: datetime  # aware UTC
    first_seen: datetime  # aware UTC, our clock
    updated: datetime  # when we last saw its content change
    author: str | None = None
    categories: tuple[str, ...] = ()
    image: str | None = None
    language: str = "ar"
    content_hash: str = ""
    # matching.record(title, summary_text), made by normalise for grouping; derived from
    # the text, so not part of the item's identity or its stored hash
    match_record: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Story:
    id: str
    lead_item: str  # item id of the lead report
    items: tuple[str, ...]  # member item ids, oldest first
    sources: tuple[str, ...]  # distinct source ids, in order of joining
    first_published: datetime
    last_published: datetime
    updated: datetime  # moves when a new outlet/report joins
    label: str = ""
    topic: str | None = None


@dataclass(frozen=True)
class Topic:
    """A thread of stories. Its story ids are a separate, paged read (Grouper.topic_stories):
    a thread can run for months, and every reader of a Topic but the topic page needs only
    its name and size."""

    id: str
    label: str
    size: int  # stories in the topic
    updated: datetime
    # When a second story linked in and the topic took its thread name: from then on every
    # story of it shows that name and link, so their feed entries changed then.
    named: datetime | None = None

    @property
    def is_thread(self) -> bool:
        """A topic worth naming beside a story: it has other stories. Every story gets a
        topic, and a link to a topic holding only the same story is noise."""
        return self.size > 1


@dataclass(frozen=True)
class PollReport:
    """What one update_source() did; printed by `worker.py --once`."""

    source: str
    outcome: Outcome
    http_status: int | None
    new: int = 0
    updated: int = 0
    seen: int = 0
    elapsed: float = 0.0
    next_poll: datetime | None = None
    error: str | None = None
