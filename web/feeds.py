"""/feeds/…: RSS 2.0, Atom 1.0 and JSON Feed 1.1 of the timeline, a source, a tag, a
country, a story or a topic — served from cached bytes (web/cache.py) with validators,
gzip, CORS and RFC 5005 paging.

    /feeds/all.<fmt>                     mode=stories by default
    /feeds/sources/<source_id>.<fmt>     mode=articles by default
    /feeds/tags/<tag>.<fmt>              mode=stories
    /feeds/countries/<cc>.<fmt>          mode=stories
    /feeds/stories/<story_id>.<fmt>      mode=articles (follow one story: its reports)
    /feeds/topics/<topic_id>.<fmt>       mode=stories
    ?mode=stories|articles  ?limit=1..200 (50)  ?q=search  ?before=<cursor>

Cursors: `<score>` (exclusive, as Store.timeline_ids) or `<score>:<id>` — the position
of the last entry of the previous page, so entries that share a timestamp are never
skipped or repeated at a page boundary.
"""
from __future__ import annotations

import logging
import math
import re
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, request

from aggregator import syndicate
from aggregator.search import Query
from aggregator.syndicate import ArticleEntry, FeedMeta, StoryEntry
from aggregator.types import Item, Source, Story, article_key, story_reports

from .cache import FastPath, OutputCache, Rendered, VersionClock, request_key, respond
from .extensions import EXT, services
from .labels import COUNTRIES, tag_label
from .ops import count_redis_error

log = logging.getLogger(__name__)
bp = Blueprint("feeds", __name__)


@bp.errorhandler(400)
def _bad_request(e):
    """A feed's client is a program: the problem in JSON for a JSON Feed URL, plain text
    otherwise, not Werkzeug's HTML page."""
    if request.path.endswith(".json"):
        resp = jsonify({"error": e.description})
        resp.status_code = 400
    else:
        resp = Response(f"{e.description}\n", 400, mimetype="text/plain")
    resp.headers["Access-Control-Allow-Origin"] = "*"  # a widget can read why
    return resp

FORMATS = ("rss", "atom", "json")
KINDS = {"sources", "tags", "countries", "stories", "topics"}
DEFAULT_MODE = {"all": "stories", "sources": "articles", "tags": "stories",
                "countries": "stories", "stories": "articles", "topics": "stories"}
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
SCAN_CAP = 3000  # items a search looks through per page before handing back a cursor
SITE_TITLE = "أخبار الشرق الأوسط"
UTC = timezone.utc
CACHE_EXT = "aggregator.output_cache"


# --- wiring: the cache and the WSGI fast path -----------------------------------------

@bp.record_once
def _install(state) -> None:
    app = state.app
    cache = OutputCache(max_entries=app.config.get("AGG_OUTPUT_CACHE_SIZE", 512))
    app.extensions[CACHE_EXT] = cache

    def clock():
        # One clock per app (per process), shared by FastPath and the view, created on
        # first use: after gunicorn's fork, with that worker's Redis connection.
        c = app.extensions.get(CACHE_EXT + ".clock")
        if c is None:
            svc = app.extensions[EXT]
            c = VersionClock(lambda: svc.store.outputs_version(),
                             ttl=app.config.get("AGG_VERSION_TTL", 0.2))
            app.extensions[CACHE_EXT + ".clock"] = c
        return c

    app.extensions[CACHE_EXT + ".clock_factory"] = clock

    def key_fn(environ):
        return request_key(environ, app.config.get("AGG_PUBLIC_URL")
                           or os.environ.get("AGG_PUBLIC_URL"))

    app.extensions[CACHE_EXT + ".key"] = key_fn
    if app.config.get("AGG_FAST_PATH", True):  # off only to measure what it saves
        app.wsgi_app = FastPath(app.wsgi_app, cache, clock, key_fn=key_fn,
                                on_error=lambda: count_redis_error(app))


def _cache() -> OutputCache:
    return current_app.extensions[CACHE_EXT]


def _clock() -> VersionClock:
    return current_app.extensions[CACHE_EXT + ".clock_factory"]()


def configured_sources() -> dict[str, Source]:
    override = current_app.config.get("AGG_SOURCES")  # tests and embedding
    if override is not None:
        return {s.id: s for s in override}
    try:
        return {s.id: s for s in services().sources}
    except Exception:
        log.warning("feeds: sources unavailable (feeds.yaml/config)", exc_info=True)
        return {}


# --- parameters ------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    mode: str
    limit: int
    q: str | None
    before: tuple[float, str | None] | None
    query: Query | None = None  # q, parsed


def _params(kind: str) -> Params:
    a = request.args
    mode = a.get("mode", DEFAULT_MODE[kind])
    if mode not in ("stories", "articles"):
        abort(400, "mode must be stories or articles")
    raw_limit = a.get("limit", str(DEFAULT_LIMIT))
    # plain ASCII digits: int() would also take '+5', '5_0' and '٥', and the raw value is
    # echoed into the self and next links
    if not re.fullmatch(r"[0-9]{1,4}", raw_limit):
        abort(400, "limit must be an integer")
    limit = int(raw_limit)
    if not 1 <= limit <= MAX_LIMIT:
        abort(400, f"limit must be 1..{MAX_LIMIT}")
    q = (a.get("q") or "").strip() or None
    if q and len(q) > 200:
        abort(400, "q is too long")
    query = Query.parse(q) if q else None
    if query is not None and not query.has_words:
        abort(400, "q has no words to search for")
    before = None
    if a.get("before"):
        before = parse_cursor(a["before"])
        if before is None:
            abort(400, "bad cursor")
    return Params(mode, limit, q, before, query)


def parse_cursor(raw: str) -> tuple[float, str | None] | None:
    score, sep, ident = raw.partition(":")
    try:
        value = float(score)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value, (ident or None) if sep else None


def format_cursor(score: float, ident: str | None) -> str:
    s = repr(float(score))
    return f"{s}:{ident}" if ident else s


# --- reads -----------------------------------------------------------------------------

def _zpage(index: str, cursor, n: int) -> list[tuple[str, float]]:
    """Newest first, strictly after `cursor` in (score desc, member desc) order —
    Redis' own order for ZREVRANGEBYSCORE, so ties resume where they stopped."""
    r = services().store.r
    if cursor is None:
        return r.zrevrangebyscore(index, "+inf", "-inf", start=0, num=n, withscores=True)
    score, ident = cursor
    out: list[tuple[str, float]] = []
    if ident is not None:
        ties = r.zrevrangebyscore(index, score, score, withscores=True)
        out = [(m, s) for m, s in ties if m < ident][:n]
    if len(out) < n:
        out += r.zrevrangebyscore(index, f"({score!r}", "-inf", start=0, num=n - len(out),
                                  withscores=True)
    return out


def _matches(query: Query | None, item: Item) -> bool:
    return query is None or query.matches(item)


def _article_page(index: str, p: Params):
    """Items of `index`, newest first, filtered by q. Returns (items, next cursor)."""
    store = services().store
    query = p.query
    found: list[Item] = []
    links: set[str] = set()  # an article in two feeds of one outlet is listed once
    cursor, scanned, last = p.before, 0, None
    if p.before is not None and p.before[1] is not None:
        # Copies of one article share its published time: the previous page may have
        # ended between them. Its items of the cursor's time count as listed.
        score, ident = p.before
        shown = [m for m in store.r.zrangebyscore(index, score, score) if m >= ident]
        links = {article_key(it.url) for it in store.get_items(shown)
                 if it.url and _matches(query, it)}
    while True:  # until one match past the page (there is a next page) or the end
        batch = _zpage(index, cursor, p.limit + 1 if not query else 200)
        if not batch:
            return found, None
        by_id = {it.id: it for it in store.get_items(i for i, _ in batch)}
        for item_id, score in batch:
            cursor = (score, item_id)
            scanned += 1
            it = by_id.get(item_id)
            if it is None or not _matches(query, it):
                continue
            link = article_key(it.url) if it.url else None
            if link in links:
                continue
            if len(found) == p.limit:  # one more exists: there is a next page
                return found, last
            found.append(it)
            if link:
                links.add(link)
            last = cursor
        if query and scanned >= SCAN_CAP:
            return found, cursor  # searched enough for one request; resume from here


def _story_entries(stories: list[Story], sources: dict[str, Source]) -> list[StoryEntry]:
    store, grouper = services().store, services().grouper
    items = {it.id: it for it in store.get_items({i for s in stories for i in s.items})}
    topics = grouper.get_topics(s.topic for s in stories if s.topic)
    out = []
    for s in stories:
        members = tuple(items[i] for i in s.items if i in items)
        if not members:
            continue  # every report trimmed by retention
        out.append(StoryEntry(s, members, sources, topics.get(s.topic)))
    return out


def _story_matches(query: Query, story: Story, items: dict[str, Item]) -> bool:
    """A story matches when one of its reports does (as the timeline's search)."""
    return any(query.matches(items[i]) for i in story.items if i in items)


def _timeline_after(grouper, cursor, n: int) -> list[tuple[str, float]]:
    """Up to n (story_id, score) of the story timeline strictly after `cursor` in
    (score desc, id desc) order — Redis' order for equal scores. Stories can share a
    published time (wire copy, feeds with minute precision), so a score-only cursor would
    skip the rest of a tie.
    The grouper's cursor is score-exclusive: ask from just above the score, drop the
    part of the tie already served."""
    if cursor is None:
        return grouper.story_timeline(None, n)
    score, ident = cursor
    if ident is None:
        return grouper.story_timeline(score, n)
    size = n + 16
    while True:
        batch = grouper.story_timeline(math.nextafter(score, math.inf), size)
        rows = [(sid, sc) for sid, sc in batch if not (sc == score and sid >= ident)]
        if len(rows) >= n or len(batch) < size:
            return rows[:n]
        size *= 4  # a long tie: look further


def _stories_global(p: Params):
    grouper = services().grouper
    query = p.query
    store = services().store
    found: list[tuple[Story, tuple]] = []
    cursor = p.before
    scanned = 0
    want = p.limit + 1 if not query else 200
    while len(found) <= p.limit:
        batch = _timeline_after(grouper, cursor, want)
        if not batch:
            break
        stories = {s.id: s for s in grouper.get_stories([sid for sid, _ in batch])}
        items = ({it.id: it for it in store.get_items(
            {i for s in stories.values() for i in s.items})} if query else {})
        for sid, score in batch:
            cursor = (score, sid)
            scanned += 1
            s = stories.get(sid)
            if s is None or (query and not _story_matches(query, s, items)):
                continue
            found.append((s, cursor))
            if len(found) > p.limit:
                break
        if query and scanned >= SCAN_CAP and len(found) <= p.limit:
            return [s for s, _ in found], cursor
        if len(batch) < want:
            break
    page = found[: p.limit]
    nxt = page[-1][1] if len(found) > p.limit else None
    return [s for s, _ in page], nxt


def _stories_in_index(index: str, p: Params):
    """Stories with at least one member in `index`, ordered by their newest member there.
    A story belongs to the page holding its newest member in the index, so paging
    neither repeats nor drops a story."""
    grouper, store = services().grouper, services().store
    query = p.query
    found: list[Story] = []
    seen: set[str] = set()
    cursor, last, scanned = p.before, None, 0
    # Items per read: a story has one or two members in most indexes; a search reads more.
    size = 200 if query else min(200, max(20, 2 * (p.limit + 1)))
    while True:
        batch = _zpage(index, cursor, size)
        if not batch:
            return found, None
        # the batch's stories, and their members' places in the index: three round trips
        sids = grouper.stories_of([m for m, _ in batch])
        stories = {s.id: s for s in grouper.get_stories(
            [sid for sid in dict.fromkeys(sids) if sid and sid not in seen])}
        newest = _newest_members(index, stories.values())
        for (item_id, score), sid in zip(batch, sids):
            cursor = (score, item_id)
            scanned += 1
            if sid is None or sid in seen:
                continue
            seen.add(sid)
            s = stories.get(sid)
            if s is None:
                continue
            if newest.get(sid, cursor) != cursor:
                continue  # its newest member here is above the cursor: an earlier page
            if query:
                items = {it.id: it for it in store.get_items(s.items)}
                if not _story_matches(query, s, items):
                    continue
            if len(found) == p.limit:
                return found, last
            found.append(s)
            last = cursor
        if query and scanned >= SCAN_CAP:
            return found, cursor


def _newest_members(index: str, stories: Iterable[Story]) -> dict[str, tuple[float, str]]:
    """Per story, (score, member) of its newest member in `index`, in one pipeline."""
    stories = [s for s in stories if s.items]
    with services().store.r.pipeline(transaction=False) as pl:
        for s in stories:
            pl.zmscore(index, list(s.items))
        scores = pl.execute()
    out = {}
    for s, sc in zip(stories, scores):
        present = [(v, m) for m, v in zip(s.items, sc) if v is not None]
        if present:
            out[s.id] = max(present)
    return out


# --- outputs ---------------------------------------------------------------------------

def public_base() -> str:
    base = (current_app.config.get("AGG_PUBLIC_URL") or os.environ.get("AGG_PUBLIC_URL")
            or request.url_root)
    return base if base.endswith("/") else base + "/"


def _authority(base: str) -> str:
    from urllib.parse import urlsplit

    return current_app.config.get("AGG_TAG_AUTHORITY") or urlsplit(base).hostname or "localhost"


def _url(base: str, path: str, fmt: str, args: dict) -> str:
    qs = urlencode(sorted((k, v) for k, v in args.items() if v not in (None, "")))
    return f"{base}{path}.{fmt}" + (f"?{qs}" if qs else "")


def _build(kind: str, name: str | None, fmt: str) -> tuple[bytes, datetime, str]:
    p = _params(kind)
    sources = configured_sources()
    store, keys = services().store, services().keys
    base = public_base()
    grouper = services().grouper

    if kind == "all":
        path, title, home = "feeds/all", SITE_TITLE, base
        index = keys.timeline
    elif kind == "sources":
        src = sources.get(name)
        if src is None and not store.r.exists(keys.source_timeline(name)):
            abort(404)
        path = f"feeds/sources/{syndicate.seg(name)}"
        title = f"{src.title if src else name} — {SITE_TITLE}"
        home, index = f"{base}?{urlencode({'source': name})}", keys.source_timeline(name)
    elif kind == "tags":
        index = keys.tag_timeline(name)
        if not any(name in s.tags for s in sources.values()) and not store.r.exists(index):
            abort(404)
        path, title = f"feeds/tags/{syndicate.seg(name)}", f"{tag_label(name)} — {SITE_TITLE}"
        home = f"{base}?{urlencode({'tag': name})}"
    elif kind == "countries":
        if not re.fullmatch(r"[A-Za-z]{2}", name):
            abort(404)  # 'ß'.upper() is 'SS': only a code's case is redirected
        cc = name.upper()
        if cc != name:  # one URL per feed: readers and the self link agree on it
            qs = request.query_string.decode("latin-1")
            abort(redirect(f"{base}feeds/countries/{syndicate.seg(cc)}.{fmt}"
                           + (f"?{qs}" if qs else ""), 301))
        index = keys.country_timeline(cc)
        if not any((s.country or "").upper() == cc for s in sources.values()) \
                and not store.r.exists(index):
            abort(404)
        path, title = (f"feeds/countries/{syndicate.seg(cc)}",
                       f"{COUNTRIES.get(cc, cc)} — {SITE_TITLE}")
        home = f"{base}?{urlencode({'country': cc})}"
    elif kind == "stories":
        found = grouper.get_stories([name])
        if not found:
            abort(404)
        story = found[0]
        path = f"feeds/stories/{syndicate.seg(name)}"
        # The lead report's headline names the story as readers know it (the grouper's
        # label is a few key terms).
        lead = store.get_items([story.lead_item])
        title = f"{(lead[0].title if lead else '') or story.label or name} — {SITE_TITLE}"
        home, index = syndicate.story_url(_meta_stub(base), name), None
    elif kind == "topics":
        topic = grouper.get_topic(name)
        if topic is None:
            abort(404)
        path = f"feeds/topics/{syndicate.seg(name)}"
        title = f"{topic.label or name} — {SITE_TITLE}"
        home, index = syndicate.topic_url(_meta_stub(base), name), None
    else:
        abort(404)

    # Entries and the cursor of the next page.
    if kind == "stories":
        entries, nxt = _one_story(story, p, sources)
    elif kind == "topics":
        entries, nxt = _topic_entries(name, p, sources)
    elif p.mode == "articles":
        items, nxt = _article_page(index, p)
        sids = grouper.stories_of([it.id for it in items])
        entries = [ArticleEntry(it, sources.get(it.source) or
                                syndicate._unknown_source(_meta_stub(base), it.source),
                                sid) for it, sid in zip(items, sids)]
    else:
        stories, nxt = (_stories_global(p) if kind == "all" else _stories_in_index(index, p))
        entries = _story_entries(stories, sources)

    # A feed retention emptied keeps a Last-Modified that moved forward: the empty-feed
    # constant would be older than what clients hold, and they would get 304s for ever.
    emptied = services().store.last_trim() if not entries and not p.before else None
    args = {"mode": request.args.get("mode"), "limit": request.args.get("limit"), "q": p.q}
    before_raw = format_cursor(*p.before) if p.before else None
    self_url = _url(base, path, fmt, args | {"before": before_raw})
    meta = FeedMeta(
        title=title + (f" — بحث: {p.q}" if p.q else ""),
        description=title,
        base_url=base,
        path=path,
        self_url=self_url,
        home_url=home,
        authority=_authority(base),
        next_url=_url(base, path, fmt, args | {"before": format_cursor(*nxt)}) if nxt else None,
        first_url=_url(base, path, fmt, args) if p.before else None,
        query=p.q,
        timezone=services().settings.timezone,
        updated=emptied,
    )
    body = syndicate.render(fmt, meta, entries, p.mode)
    updated = max((syndicate.entry_updated(e) for e in entries),
                  default=emptied or syndicate.EPOCH)
    return body, updated, self_url


def _meta_stub(base: str) -> FeedMeta:
    return FeedMeta(title="", base_url=base, path="", self_url=base, home_url=base,
                    authority="")


def _one_story(story: Story, p: Params, sources):
    """Follow one story: its reports (articles) newest first, or the story itself."""
    if p.mode == "stories":
        if not _before(story, p.before):
            return [], None  # a page after the story itself
        if p.query and not _story_matches(p.query, story, {
                it.id: it for it in services().store.get_items(story.items)}):
            return [], None
        return _story_entries([story], sources), None
    return _report_page([story], p, sources)


def _topic_entries(topic_id: str, p: Params, sources):
    grouper, store = services().grouper, services().store
    ids = grouper.topic_stories(topic_id, 1000)
    stories = sorted(grouper.get_stories(ids), key=lambda s: (s.last_published, s.id),
                     reverse=True)
    if p.mode == "articles":  # the cursor is a report's place, not a story's
        return _report_page(stories, p, sources)
    if p.query:
        items = {it.id: it for it in store.get_items({i for s in stories for i in s.items})}
        stories = [s for s in stories if _story_matches(p.query, s, items)]
    stories = [s for s in stories if _before(s, p.before)]
    page = stories[: p.limit]
    nxt = (page[-1].last_published.timestamp(), page[-1].id) if len(stories) > p.limit else None
    return _story_entries(page, sources), nxt


def _before(story: Story, cursor: tuple[float, str | None] | None) -> bool:
    """Whether a story comes after a stories-mode cursor (its newest report's time, then
    its id; a score-only cursor includes every story of that second)."""
    if cursor is None:
        return True
    score, ident = cursor
    return (story.last_published.timestamp(), story.id) < (score, ident or "\uffff")


def _report_page(stories: list[Story], p: Params, sources):
    """The stories' reports, one per article as the story page lists them, newest first,
    filtered by q, from the cursor (published time, item id) on; and the next cursor."""
    store = services().store
    members = {it.id: it for it in store.get_items({i for s in stories for i in s.items})}
    query = p.query
    reports = [(it, s.id) for s in stories
               for it in story_reports([members[i] for i in s.items if i in members],
                                       s.lead_item, sources=sources)
               if _matches(query, it)]
    reports.sort(key=lambda r: (r[0].published.timestamp(), r[0].id), reverse=True)
    if p.before:
        score, ident = p.before
        reports = [r for r in reports
                   if (r[0].published.timestamp(), r[0].id) < (score, ident or "")]
    page = reports[: p.limit]
    last = page[-1][0] if page else None
    nxt = (last.published.timestamp(), last.id) if len(reports) > p.limit else None
    base = public_base()
    return [ArticleEntry(it, sources.get(it.source) or
                         syndicate._unknown_source(_meta_stub(base), it.source), sid)
            for it, sid in page], nxt


def _serve(kind: str, name: str | None, fmt: str) -> Response:
    if fmt not in FORMATS:
        abort(404)
    cache = _cache()
    # The raw WSGI strings, exactly what FastPath looks up (Arabic tags included).
    key = current_app.extensions[CACHE_EXT + ".key"](request.environ)
    try:
        version = _clock().current()
    except Exception:  # Redis down (the fast path already tried the cache): say so
        log.warning("outputs version unreadable", exc_info=True)
        count_redis_error()
        r = cache.latest(key)
        if r is None:
            abort(503, "store unavailable")
        version = None
    else:
        r = cache.get(key, version)
    if r is None:
        # Single flight: under heavy ingest every poll bumps the version, and 64 requests
        # rendering the same output side by side burned the CPU (bench/load.py: p50 ~3 s).
        # While one request renders, the others get the previous bytes (with their own
        # validators) at once; with nothing to fall back on they wait for the render.
        lock = cache.render_lock(key)
        stale = cache.latest(key)
        if stale is not None and not lock.acquire(blocking=False):
            r = stale
        else:
            if stale is None:
                lock.acquire()
            try:
                r = cache.get(key, version)
                if r is None:
                    body, updated, self_url = _build(kind, name, fmt)
                    r = Rendered.build(body, syndicate.CONTENT_TYPES[fmt], updated, self_url,
                                       version)
                    cache.put(key, r)
            finally:
                lock.release()
    status, headers, body = respond(r, request.environ)
    # Werkzeug drops the body of HEAD and 304 itself.
    return Response(body, status=int(status[:3]), headers=headers)


@bp.route("/feeds/all.<fmt>")
def all_feed(fmt: str):
    return _serve("all", None, fmt)


@bp.route("/feeds/<kind>/<name>.<fmt>")
def kind_feed(kind: str, name: str, fmt: str):
    if kind not in KINDS:
        abort(404)
    return _serve(kind, name, fmt)


@bp.after_request
def _cors(resp: Response) -> Response:
    # Widgets read our feeds cross-origin: let them see our 4xx/5xx too.
    resp.headers.setdefault("Access-Control-Allow-Origin", "*")
    if request.method == "OPTIONS":
        # A script that revalidates by hand sends If-None-Match, or Cache-Control to skip
        # its own cache: not CORS-safelisted headers, so the browser asks first.
        resp.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = (
            "If-None-Match, If-Modified-Since, Cache-Control, Pragma")
        resp.headers["Access-Control-Max-Age"] = "86400"
    return resp
