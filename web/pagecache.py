"""Rendered HTML pages, cached per store version: what web/cache.py does for feeds.

A page's bytes are served again while they are younger than `max_age` seconds (pages
say "منذ ٥ دقائق" and carry the render time for app.js; /sources shows poll states, which
change without a version bump) and either
  * the store's outputs version is the one they were rendered at (every poll that
    changes items or stories bumps it, in the same transaction) and feeds.yaml is the one
    they were rendered with (outlet names, filter choices); or
  * they are younger than `min_refresh` seconds. Under heavy ingest the version moves
    several times a second, faster than a page renders: without this floor every hot page
    would be re-rendered back to back in every process (bench/load.py: the renders took
    the CPU the requests needed). With it a page costs at most one render per
    `min_refresh` per process, and shows a change at most that late; when the store is
    quiet, the first request after a change renders it.

Single flight, as web/feeds.py: while one request re-renders a stale page the others get
the stale bytes at once; a cold miss renders once and the other requests for it wait.

Only 200s and 301s (an item id's link to its story) are kept, keyed by path plus the
arguments the view reads, normalised (so
`?utm_source=…` or `?limit=030` share an entry); a view whose key function returns None
for a request (a search) is rendered every time. What after_request adds (CSP,
X-Frame-Options, the embed CSP) is added to the cached response as to a fresh one,
because the view is what is cached, not the response. Pages answer 503 when Redis is
down, cached or not (a page cannot say how old its news is; feeds can and do).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from flask import Response, current_app, request

from .cache import OutputCache, _etag_matches, accepts_gzip

EXT = "aggregator.page_cache"
PAGE_MAX_AGE = 30.0  # seconds: relative times are shown to the minute
PAGE_MIN_REFRESH = 2.0  # seconds: at most one re-render per page per process this often
MAX_ENTRIES = 256
MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Page:
    body: bytes
    gz: bytes
    etag: str
    etag_gz: str
    content_type: str
    version: tuple  # (outputs version, feeds.yaml digest)
    born: float  # time.monotonic() at render
    status: int = 200
    location: str | None = None  # of a 301

    @classmethod
    def build(cls, body: bytes, content_type: str, version: tuple, status: int = 200,
              location: str | None = None) -> "Page":
        digest = hashlib.sha256(body).hexdigest()[:32]
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as f:
            f.write(body)
        return cls(body, buf.getvalue(), f'"p{digest}"', f'"p{digest}-gz"', content_type,
                   version, time.monotonic(), status, location)


class PageCache(OutputCache):
    """OutputCache's LRU (bounded in entries and bytes) and render locks, holding Pages."""

    def fresh(self, key: tuple, version: tuple, max_age: float,
              min_refresh: float = 0.0) -> Page | None:
        p = self._data.get(key)
        if p is not None:
            age = time.monotonic() - p.born
            if age < max_age and (age < min_refresh or p.version == version):
                self.hits += 1
                return p
        self.misses += 1
        return None


_install_lock = threading.Lock()


def page_cache(app=None) -> PageCache:
    app = app or current_app
    cache = app.extensions.get(EXT)
    if cache is None:
        with _install_lock:
            cache = app.extensions.setdefault(EXT, PageCache(
                max_entries=app.config.get("AGG_PAGE_CACHE_SIZE", MAX_ENTRIES),
                max_bytes=MAX_BYTES))
    return cache


def _state() -> tuple:
    from .extensions import services
    from .feeds import _clock

    version = _clock().current()  # raises while Redis is down: the view then says 503
    try:
        digest = services().config_digest()
    except Exception:  # no readable feeds.yaml: pages show outlets by id, still cacheable
        digest = None
    return version, digest


def _respond(p: Page) -> Response:
    if p.status != 200:
        return Response(p.body, status=p.status, content_type=p.content_type,
                        headers={"Location": p.location})
    gz = accepts_gzip(request.headers.get("Accept-Encoding"))
    headers = {"ETag": p.etag_gz if gz else p.etag, "Vary": "Accept-Encoding"}
    inm = request.headers.get("If-None-Match")
    if inm is not None and _etag_matches(inm, (p.etag, p.etag_gz)):
        return Response(status=304, headers=headers)
    if gz:
        headers["Content-Encoding"] = "gzip"
    return Response(p.gz if gz else p.body, content_type=p.content_type, headers=headers)


def cached_page(key: Callable[[], tuple | None] = tuple, max_age: float | None = None,
                min_refresh: float | None = None):
    """Cache a page view. `key()` gives the normalised request arguments the view reads
    (the path is added), or None for a request that must be rendered every time.
    `max_age`/`min_refresh` default to AGG_PAGE_MAX_AGE/AGG_PAGE_MIN_REFRESH."""
    def wrap(view):
        @wraps(view)
        def inner(**kwargs):
            extra = key() if request.method in ("GET", "HEAD") else None
            if extra is None or not current_app.config.get("AGG_PAGE_CACHE", True):
                return view(**kwargs)
            cfg = current_app.config
            age = max_age if max_age is not None else cfg.get("AGG_PAGE_MAX_AGE", PAGE_MAX_AGE)
            floor = min_refresh if min_refresh is not None else cfg.get(
                "AGG_PAGE_MIN_REFRESH", PAGE_MIN_REFRESH)
            cache = page_cache()
            k = (request.path,) + tuple(extra)
            state = _state()
            p = cache.fresh(k, state, age, floor)
            if p is not None:
                return _respond(p)
            lock = cache.render_lock(k)
            stale = cache.latest(k)
            if stale is not None and not lock.acquire(blocking=False):
                return _respond(stale)  # another thread is re-rendering it
            if stale is None:
                lock.acquire()  # cold: wait for the render in flight, if any
            try:
                p = cache.fresh(k, state, age, floor)
                if p is not None:
                    return _respond(p)
                resp = current_app.make_response(view(**kwargs))
                if resp.status_code not in (200, 301) or resp.is_streamed \
                        or "Set-Cookie" in resp.headers:
                    return resp
                p = Page.build(resp.get_data(), resp.content_type, state, resp.status_code,
                               resp.headers.get("Location"))
                cache.put(k, p)
                return _respond(p)
            finally:
                lock.release()
        return inner
    return wrap
