"""What `sources add URL` reads from the URL itself: the feed's title, site and language,
or, given a web page, the feed the page announces (<link rel="alternate">, the
autodiscovery every feed reader follows). The fetch is the worker's own (User-Agent, size
cap, redirects, SSRF guard), so a URL that adds cleanly is one the worker can poll.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from .errors import DiscoveryError, ParseError
from .fetch import Fetcher
from .normalize import clean_text
from .parse import parse_feed
from .types import FetchResult, Outcome, SourceState

_PRIMARY_LANGUAGE = re.compile(r"([a-z]{2,3})(?:[-_][a-z0-9]+)*")
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml")
# Failures that may pass (see DiscoveryError.passing); `blocked`: the operator may opt in.
PASSING = {Outcome.DNS, Outcome.CONNECT, Outcome.TIMEOUT, Outcome.TLS, Outcome.HTTP_5XX,
           Outcome.RATE_LIMITED, Outcome.PROTOCOL, Outcome.BLOCKED}


@dataclass(frozen=True)
class Discovered:
    url: str  # the feed's URL: a page's announced feed, a permanent redirect's target
    title: str | None
    site: str | None
    language: str | None  # the primary subtag ("en" of "en-US"), if the feed names one
    via: str | None = None  # the page that announced the feed, when `url` was one
    entries: int = 0


def feed_links(html: bytes, base: str) -> list[str]:
    """The RSS/Atom feeds a web page announces, in document order, as absolute http(s)
    URLs (relative to the page, or to its <base href>)."""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return []
    base = urljoin(base, (doc.xpath("string(//base/@href)") or "").strip())
    out: list[str] = []
    for link in doc.xpath("//link[@href]"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        if "alternate" in rel and kind in FEED_TYPES:
            url = urljoin(base, link.get("href").strip())
            if urlsplit(url).scheme in ("http", "https") and url not in out:
                out.append(url)
    return out


def _looks_like_html(result: FetchResult) -> bool:
    kind = result.headers.get("content-type", "").split(";")[0].strip().lower()
    head = (result.body or b"")[:512].lstrip().lower()
    return kind in ("text/html", "application/xhtml+xml") or head.startswith((b"<!doctype html", b"<html"))


def _fetch(fetcher: Fetcher, url: str, now: datetime) -> FetchResult:
    result = fetcher.fetch(url, SourceState(), now)
    if not result.outcome.is_success or not result.body:
        raise DiscoveryError(f"{url}: {result.outcome.value}"
                             + (f" ({result.error})" if result.error else ""),
                             passing=result.outcome in PASSING)
    return result


def discover(url: str, fetcher: Fetcher, now: datetime) -> Discovered:
    """Read `url` (a feed, or a page announcing one). Raises DiscoveryError saying why
    nothing usable is there."""
    result = _fetch(fetcher, url, now)
    via = None
    try:
        feed = parse_feed(result.body, result.headers, result.final_url)
    except ParseError as e:
        if not _looks_like_html(result):
            raise DiscoveryError(f"{url}: not a feed ({e})") from e
        links = feed_links(result.body, result.final_url)
        if not links:
            raise DiscoveryError(f"{url}: a web page that announces no RSS or Atom feed "
                                 '(no <link rel="alternate" type="application/rss+xml">)') from e
        via, url = url, links[0]
        result = _fetch(fetcher, url, now)
        try:
            feed = parse_feed(result.body, result.headers, result.final_url)
        except ParseError as e2:
            raise DiscoveryError(f"{url} (announced by {via}): not a feed ({e2})") from e2
    site = feed.link if feed.link and urlsplit(feed.link).scheme in ("http", "https") else None
    language = _PRIMARY_LANGUAGE.fullmatch((feed.language or "").strip().lower())
    return Discovered(url=result.permanent_redirect or url, title=clean_text(feed.title) or None,
                      site=site, language=language.group(1) if language else None, via=via,
                      entries=len(feed.entries))
