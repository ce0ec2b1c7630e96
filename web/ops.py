"""Operations endpoints: /healthz for load balancers and monitors, /sources.opml for people
moving their subscriptions (to us, or past us to the outlets themselves), and the admin
surfaces /status (HTML and JSON) and /metrics (Prometheus).

Admin surfaces are never open by accident:
  /status   needs AGG_STATUS_TOKEN (Authorization: Bearer …, or ?token=) or basic auth
            (AGG_STATUS_USER + AGG_STATUS_PASSWORD); with neither set it does not exist (404).
  /metrics  the same credentials when they are set; with none set, only a direct loopback
            request is answered (a scraper on the same host). A request that came through a
            proxy (X-Forwarded-For, X-Real-IP or Forwarded present: the shipped nginx.conf
            sets X-Forwarded-For) is not loopback, whatever the socket says.
Credentials are compared in constant time (hmac.compare_digest), on bytes. An address with
too many failed logins gets 429 and Retry-After instead (FailureLimiter).
"""
from __future__ import annotations

import hmac
import ipaddress
import math
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from functools import wraps
from urllib.parse import quote, urlencode

import redis
from flask import (Blueprint, Response, abort, current_app, jsonify, render_template, request,
                   url_for)

from aggregator.config import config_status
from aggregator.errors import AggregatorError, StoreError
from aggregator.schedule import for_url

from .extensions import services

bp = Blueprint("ops", __name__)

UTC = timezone.utc
# The worker beats every 5 s (runner housekeeping) and the key expires after 600 s; a beat
# older than this (24 missed beats) means ingestion has stalled even if the key lives on.
DEFAULT_MAX_HEARTBEAT_AGE = 120.0


def _max_heartbeat_age() -> float:
    value = current_app.config.get("HEALTH_MAX_HEARTBEAT_AGE") or os.environ.get(
        "AGG_HEALTH_MAX_HEARTBEAT_AGE")
    return float(value) if value else DEFAULT_MAX_HEARTBEAT_AGE


@bp.get("/healthz")
def healthz():
    """{redis, worker_heartbeat_age_s, ok}: 200 when Redis answers and the worker beat
    recently, 503 otherwise. No heartbeat at all (worker never started, or its key expired)
    is unhealthy too, unless HEALTH_REQUIRE_WORKER is false (a web-only deployment)."""
    svc = services()
    redis_ok = False
    age = None
    try:
        svc.client.ping()
        redis_ok = True
        beat = svc.store.last_heartbeat()
        if beat is not None:
            if beat.tzinfo is None:
                beat = beat.replace(tzinfo=UTC)
            age = round(max(0.0, (datetime.now(UTC) - beat).total_seconds()), 3)
    except (redis.RedisError, AggregatorError, OSError, ValueError):
        pass
    require_worker = current_app.config.get("HEALTH_REQUIRE_WORKER", True)
    if age is None:
        worker_ok = not require_worker
    else:
        worker_ok = age <= _max_heartbeat_age()
    ok = redis_ok and worker_ok
    resp = jsonify(redis=redis_ok, worker_heartbeat_age_s=age, ok=ok)
    resp.status_code = 200 if ok else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp


FORMATS = (("atom", "Atom"), ("rss", "RSS"), ("json", "JSON Feed"))


@bp.get("/sources.opml")
def sources_opml():
    """OPML 2.0: one folder with the outlets' own feeds, one with ours (everything, per
    outlet, per tag, per country), as absolute URLs so the file works once downloaded."""
    base = request.url_root.rstrip("/")
    from .pages import site_name

    site = site_name()
    try:
        sources = sorted(services().sources, key=lambda s: (s.rank, s.id))
    except (OSError, AggregatorError):
        sources = []

    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = f"{site}: المصادر والخلاصات"
    ET.SubElement(head, "dateCreated").text = format_datetime(datetime.now(UTC), usegmt=True)
    ET.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")

    outlets = ET.SubElement(body, "outline", text="المصادر", title="المصادر")
    for s in sources:
        attrs = {"type": "rss", "text": s.title or s.id, "title": s.title or s.id,
                 "xmlUrl": s.url, "language": s.language or "ar"}
        if s.site:
            attrs["htmlUrl"] = s.site
        cats = [f"/{t}" for t in s.tags] + ([f"/country/{s.country.upper()}"] if s.country else [])
        if cats:
            attrs["category"] = ",".join(cats)
        ET.SubElement(outlets, "outline", attrs)

    ours = ET.SubElement(body, "outline", text=f"خلاصات {site}", title=f"خلاصات {site}")

    def add(parent, label: str, path: str, html: str):
        for ext, fmt in FORMATS[:2]:  # OPML readers subscribe to XML feeds
            ET.SubElement(parent, "outline", {
                "type": "rss", "text": f"{label} ({fmt})", "title": f"{label} ({fmt})",
                "xmlUrl": f"{base}{path}.{ext}", "htmlUrl": f"{base}{html}", "language": "ar",
            })

    add(ours, "كل الأخبار", "/feeds/all", "/")
    if sources:
        per_source = ET.SubElement(ours, "outline", text="حسب المصدر", title="حسب المصدر")
        for s in sources:
            add(per_source, s.title or s.id, f"/feeds/sources/{quote(s.id, safe='')}",
                f"/?{urlencode({'source': s.id})}")
        tags = sorted({t for s in sources for t in s.tags})
        if tags:
            per_tag = ET.SubElement(ours, "outline", text="حسب القسم", title="حسب القسم")
            from .labels import tag_label

            for t in tags:
                add(per_tag, tag_label(t), f"/feeds/tags/{quote(t, safe='')}", f"/?{urlencode({'tag': t})}")
        countries = sorted({s.country.upper() for s in sources if s.country})
        if countries:
            from .labels import COUNTRIES

            per_cc = ET.SubElement(ours, "outline", text="حسب البلد", title="حسب البلد")
            for cc in countries:
                add(per_cc, COUNTRIES.get(cc, cc), f"/feeds/countries/{quote(cc, safe='')}",
                    f"/?{urlencode({'country': cc})}")

    ET.indent(opml)
    data = ET.tostring(opml, encoding="utf-8", xml_declaration=True)
    resp = Response(data, content_type="text/x-opml; charset=utf-8")
    resp.headers["Content-Disposition"] = 'inline; filename="sources.opml"'
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


# --- admin surfaces: auth ---------------------------------------------------------------------

def _setting(name: str) -> str:
    """App config first (tests, embedding apps), then the environment."""
    if name in current_app.config:
        return current_app.config.get(name) or ""
    return os.environ.get(name, "")


def _same(given: str, expected: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def admin_configured() -> bool:
    return bool(_setting("AGG_STATUS_TOKEN")) or bool(
        _setting("AGG_STATUS_USER") and _setting("AGG_STATUS_PASSWORD"))


def admin_authorized() -> bool:
    token = _setting("AGG_STATUS_TOKEN")
    user, password = _setting("AGG_STATUS_USER"), _setting("AGG_STATUS_PASSWORD")
    ok = False
    header = request.headers.get("Authorization", "")
    if token:
        given = None
        if header[:7].lower() == "bearer ":
            given = header[7:].strip()
        elif "token" in request.args:
            given = request.args.get("token", "")
        if given is not None:
            ok = _same(given, token) or ok
    if user and password:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            # Both comparisons always run: no early exit on a wrong user name.
            user_ok = _same(auth.username or "", user)
            password_ok = _same(auth.password or "", password)
            ok = (user_ok and password_ok) or ok
    return ok


def is_direct_loopback() -> bool:
    if any(request.headers.get(h) for h in ("X-Forwarded-For", "X-Real-IP", "Forwarded")):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _challenge() -> Response:
    resp = Response("authentication required\n", status=401,
                    content_type="text/plain; charset=utf-8")
    if _setting("AGG_STATUS_USER") and _setting("AGG_STATUS_PASSWORD"):
        resp.headers["WWW-Authenticate"] = 'Basic realm="aggregator admin", charset="UTF-8"'
    else:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="aggregator admin"'
    return _private(resp)


def _private(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    # ?token= must not leave in a Referer when an operator follows a source's link.
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp


# --- admin surfaces: failed-login limit -------------------------------------------------------

MAX_FAILURES = 10  # failed logins per client address per window, then 429
FAILURE_WINDOW = 300.0  # seconds
LIMITER_EXT = "aggregator.admin_limiter"


class FailureLimiter:
    """Failed admin logins per client address in the last `window` seconds.

    In process, on purpose: the admin surfaces must keep answering while Redis is down
    (/metrics then reports agg_redis_up 0), and a limiter that fails open during an outage
    would be no limit. The price: each gunicorn worker counts on its own (an address gets
    `max_failures` × workers tries per window) and a restart forgets. A guess still costs
    a request, and the token's length stays the real defence (docs/operations.md)."""

    MAX_ADDRESSES = 10_000  # memory bound: the least recently failing address goes first

    def __init__(self, max_failures: int, window: float):
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(addr, ()) if now - t < self.window]
        if times:
            self._failures[addr] = times
        else:
            self._failures.pop(addr, None)
        return times

    def retry_after(self, addr: str) -> int:
        """Seconds until `addr` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(addr, now)
            if len(times) < self.max_failures:
                return 0
            return max(1, math.ceil(times[-self.max_failures] + self.window - now))

    def failed(self, addr: str) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(addr, now)
            self._failures[addr] = (times + [now])[-self.max_failures:]
            self._failures.move_to_end(addr)
            while len(self._failures) > self.MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._failures.pop(addr, None)


def _limiter() -> FailureLimiter:
    app = current_app._get_current_object()
    lim = app.extensions.get(LIMITER_EXT)
    if lim is None:
        lim = app.extensions.setdefault(LIMITER_EXT, FailureLimiter(
            int(_setting("AGG_ADMIN_MAX_FAILURES") or MAX_FAILURES),
            float(_setting("AGG_ADMIN_FAILURE_WINDOW") or FAILURE_WINDOW)))
    return lim


def client_address() -> str:
    """The reader's address: the socket's, or, when the socket is our own proxy on
    loopback (deploy/nginx.conf), the address that proxy appended to X-Forwarded-For (the
    last entry: earlier ones are whatever the client sent). Without this every request
    through nginx would share 127.0.0.1 and one guesser would lock the operators out."""
    addr = request.remote_addr or ""
    try:
        loopback = ipaddress.ip_address(addr).is_loopback
    except ValueError:
        loopback = False
    forwarded = request.headers.get("X-Forwarded-For", "")
    if loopback and forwarded.strip():
        return forwarded.split(",")[-1].strip()
    return addr


def _presented_credentials() -> bool:
    return bool(request.headers.get("Authorization")) or "token" in request.args


def _too_many(wait: int) -> Response:
    resp = Response("too many failed logins; try again later\n", status=429,
                    content_type="text/plain; charset=utf-8")
    resp.headers["Retry-After"] = str(wait)
    return _private(resp)


def admin_only(open_on_loopback: bool = False):
    """Configured credentials required; with none configured the surface does not exist
    (404), except /metrics for a direct loopback scraper. An address that failed
    MAX_FAILURES logins within FAILURE_WINDOW gets 429 and Retry-After, its credentials
    unchecked, until the oldest of those failures is older than the window."""
    def wrap(view):
        @wraps(view)
        def inner(*args, **kwargs):
            if admin_configured():
                limiter, addr = _limiter(), client_address()
                wait = limiter.retry_after(addr)
                if wait:
                    return _too_many(wait)
                if not admin_authorized():
                    if _presented_credentials():  # a browser's first, bare request is no guess
                        limiter.failed(addr)
                    return _challenge()
                limiter.succeeded(addr)
            elif not (open_on_loopback and is_direct_loopback()):
                abort(404)
            return _private(view(*args, **kwargs))
        return inner
    return wrap


# --- /status -----------------------------------------------------------------------------------

HEALTH_ORDER = {"failing": 0, "gone": 1, "moved": 2, "new": 3, "ok": 4, "off": 5}
HEALTH_LABELS = {"failing": "متعثّر", "gone": "معطّل (410)", "moved": "انتقل (عدّل الرابط)",
                 "new": "لم يُجلب بعد", "ok": "يعمل", "off": "موقوف في الإعداد"}
HEALTH_CLASS = {"failing": "failing", "gone": "disabled", "moved": "new", "new": "new",
                "ok": "ok", "off": "disabled"}
# sort key -> (label, key function giving worst first). "-key" reverses.
SORTS = {
    "worst": "الأسوأ أولًا",
    "id": "المعرّف",
    "outcome": "النتيجة",
    "failing": "متعثّر منذ",
    "errors": "الأخطاء",
    "last_poll": "آخر جلب",
    "next_poll": "الجلب التالي",
    "items": "أخبار ٢٤ ساعة",
    "latency": "زمن الاستجابة",
}
ITEMS_WINDOW = timedelta(hours=24)


def _now() -> datetime:
    fixed = current_app.config.get("AGG_NOW")
    return fixed if fixed is not None else datetime.now(UTC)


def _health(source, st) -> str:
    if not source.enabled:
        return "off"
    if st.disabled_reason:
        return "gone"
    if st.last_status is None:
        return "new"
    if st.last_status not in ("ok", "not-modified"):
        return "failing"
    return "moved" if st.suggested_url else "ok"


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def status_rows(now: datetime) -> list[dict]:
    """One dict per configured source, in feeds.yaml order. Items in the last 24 h are
    counted by published time on the source's own timeline (ZCOUNT, O(log n)); published
    is clamped at ingest to [plausible, now] and falls back to first-seen, so a feed that
    re-sends old items does not look busy, and a new source's backlog does not inflate it."""
    svc = services()
    sources = list(svc.sources)
    states = svc.store.load_states([s.id for s in sources]) if sources else {}
    k = svc.keys
    since = (now - ITEMS_WINDOW).timestamp()
    with svc.client.pipeline(transaction=False) as p:
        for s in sources:
            p.zcount(k.source_timeline(s.id), since, "+inf")
            p.zcard(k.source_timeline(s.id))
        p.hgetall(k.alerts_open)
        counts = p.execute()
    incidents = counts[-1]
    rows = []
    for i, s in enumerate(sources):
        st = for_url(s, states[s.id])  # an edited URL: not the old one's verdicts
        failing_for = (now - st.failing_since).total_seconds() if st.failing_since else None
        rows.append({
            "id": s.id, "title": s.title, "language": s.language, "url": s.url,
            "site": s.site, "rank": s.rank,
            "enabled": s.enabled, "interval_s": s.interval, "health": _health(s, st),
            "outcome": st.last_status, "http_status": st.last_http_status,
            "last_error": st.last_error, "last_poll": st.last_poll,
            "last_success": st.last_success,
            # a source the worker does not poll has no next poll (a stale one is stored)
            "next_poll": st.next_poll if s.enabled and not st.disabled_reason else None,
            "retry_after_until": st.retry_after_until, "errors": st.errors, "polls": st.polls,
            "consecutive_failures": st.consecutive_failures, "failing_since": st.failing_since,
            "failing_for_s": round(failing_for) if failing_for is not None else None,
            "items_24h": counts[2 * i], "items_total": counts[2 * i + 1],
            "latency_ms": st.latency_ms, "suggested_url": st.suggested_url,
            "disabled_reason": st.disabled_reason,
            "alerted": f"source:{s.id}" in incidents,
        })
    return rows


def _sort_key(name: str):
    far = float("inf")
    if name == "id":
        return lambda r: r["id"]
    if name == "outcome":
        return lambda r: (r["outcome"] or "~", r["rank"])
    if name == "failing":
        return lambda r: (r["failing_since"].timestamp() if r["failing_since"] else far, r["rank"])
    if name == "errors":
        return lambda r: (-r["consecutive_failures"], -r["errors"], r["rank"])
    if name == "last_poll":  # the longest unpolled first
        return lambda r: (r["last_poll"].timestamp() if r["last_poll"] else -far, r["rank"])
    if name == "next_poll":
        return lambda r: (r["next_poll"].timestamp() if r["next_poll"] else far, r["rank"])
    if name == "items":  # the quietest first
        return lambda r: (r["items_24h"], r["rank"])
    if name == "latency":  # the slowest first
        return lambda r: (-(r["latency_ms"] or 0.0), r["rank"])
    # worst: failing longest, then 410-disabled, moved, never polled, fine, switched off
    return lambda r: (HEALTH_ORDER[r["health"]], -(r["failing_for_s"] or 0),
                      -r["consecutive_failures"], r["items_24h"], r["rank"])


def sort_rows(rows: list[dict], sort: str) -> tuple[list[dict], str]:
    """`sort` is a SORTS key, worst first; a leading '-' reverses. Unknown → worst."""
    reverse = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in SORTS:
        name, reverse = "worst", False
    return sorted(rows, key=_sort_key(name), reverse=reverse), ("-" if reverse else "") + name


def _jsonable(row: dict) -> dict:
    return {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in row.items()}


def _wants_json() -> bool:
    if request.path.endswith(".json"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _status_failed(code: int, error: str, message: str):
    """/status.json gets the error as JSON; the page an Arabic page (never a raw 500)."""
    if _wants_json():
        resp = jsonify({"error": error})
    else:
        resp = current_app.make_response(render_template(
            "error.html", code=code, title="حالة المصادر غير متاحة", message=message))
    resp.status_code = code
    if code == 503:
        resp.headers["Retry-After"] = "30"
    return resp


@bp.get("/status", endpoint="status", provide_automatic_options=False)
@bp.get("/status.json", endpoint="status_json", provide_automatic_options=False)
@admin_only()
def status():
    now = _now()
    try:
        rows = status_rows(now)
        svc = services()
        rejected = svc.config_rejected
        incidents = svc.client.hgetall(svc.keys.alerts_open)
        beat = svc.store.last_heartbeat()
    except (redis.RedisError, OSError, StoreError) as e:
        count_redis_error()
        return _status_failed(503, f"store unavailable: {e}",
                              "تعذّر الوصول إلى قاعدة الأخبار. حاول بعد قليل.")
    except AggregatorError as e:  # feeds.yaml unreadable or invalid: say which line
        return _status_failed(500, str(e), str(e))
    rows, sort = sort_rows(rows, request.args.get("sort", "worst"))
    summary = {h: sum(1 for r in rows if r["health"] == h) for h in HEALTH_ORDER}
    outage = incidents.get("outage")
    if beat is not None and beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    heartbeat_age = round((now - beat).total_seconds(), 1) if beat else None
    if _wants_json():
        import json as _json

        resp = jsonify({
            "generated": _iso(now), "sort": sort, "summary": summary,
            "outage": _json.loads(outage) if outage else None,
            "worker_heartbeat_age_s": heartbeat_age,
            "config": config_status(svc.config_path, rejected),
            "sources": [_jsonable(r) for r in rows],
        })
        resp.headers["Vary"] = "Accept"
        return resp
    # Sort links keep a ?token= the page was opened with (basic auth the browser resends).
    keep = {"token": request.args["token"]} if "token" in request.args else {}
    links = {name: url_for("ops.status", sort=(f"-{name}" if sort == name else name), **keep)
             for name in SORTS}
    html = render_template("status.html", rows=rows, sort=sort, sorts=SORTS, links=links,
                           summary=summary, labels=HEALTH_LABELS, classes=HEALTH_CLASS,
                           outage=bool(outage), heartbeat_age=heartbeat_age, now=now,
                           rejected=rejected,
                           json_url=url_for("ops.status_json", sort=sort, **keep))
    resp = Response(html, content_type="text/html; charset=utf-8")
    resp.headers["Vary"] = "Accept"
    return resp


# --- /metrics ---------------------------------------------------------------------------------

METRICS_EXT = "aggregator.metrics"


class _WebMetrics:
    """Per app and process: the registry /metrics renders, and the recorder and cache counter
    that push this process's output-cache hits to Redis."""

    def __init__(self, app):
        self.app = app
        self.recorder = None
        self.cache_counter = None
        self.registry = None
        self._lock = threading.Lock()
        self._held_errors = 0  # counted before the recorder exists (Redis down from start)

    def redis_error(self) -> None:
        with self._lock:
            if self.recorder is None:
                self._held_errors += 1
                return
        self.recorder.redis_error()

    def ensure(self) -> None:
        from aggregator.metrics import CacheCounter, RedisCollector, Recorder

        if self.recorder is None:
            svc = self.app.extensions["aggregator"]
            recorder = Recorder(svc.client, svc.keys)
            with self._lock:
                recorder.count("redis_errors", self._held_errors)
                self._held_errors = 0
                self.recorder = recorder
        if self.cache_counter is None:
            from .feeds import CACHE_EXT as FEEDS_CACHE_EXT  # (they import this module)
            from .pagecache import EXT as PAGE_CACHE_EXT

            ext = self.app.extensions
            names = {"cache": FEEDS_CACHE_EXT, "page_cache": PAGE_CACHE_EXT}
            self.cache_counter = CacheCounter(  # the caches are made on first use
                lambda: {p: ext[e] for p, e in names.items() if e in ext}, self.recorder)
        self.cache_counter.ensure_started()
        if self.registry is None:
            from prometheus_client import CollectorRegistry

            svc = self.app.extensions["aggregator"]
            registry = CollectorRegistry(auto_describe=False)
            registry.register(RedisCollector(
                lambda: svc.client, svc.keys, lambda: svc.sources,
                before_collect=self.cache_counter.flush,
                on_redis_error=self.recorder.redis_error))
            self.registry = registry


def _web_metrics(app=None) -> _WebMetrics:
    app = app or current_app._get_current_object()
    wm = app.extensions.get(METRICS_EXT)
    if wm is None:
        wm = app.extensions.setdefault(METRICS_EXT, _WebMetrics(app))
    return wm


def count_redis_error(app=None) -> None:
    """A request that Redis failed (a page's 503, a feed answered from its last bytes, an
    admin page): agg_redis_errors_total. Held in this process until Redis takes it (with
    the next flush of the cache counter, or before a scrape); never connects by itself."""
    _web_metrics(app).redis_error()


@bp.after_app_request
def _count_cache(response):
    """Starts this process's cache-counter thread on its first request (after any fork).
    Fast-path hits never reach Flask, but every cached output was first rendered here.
    Only once the request itself has connected to Redis: this hook never connects (with
    Redis down that would add a connect timeout to every request)."""
    wm = current_app.extensions.get(METRICS_EXT)
    if wm is not None and wm.registry is not None and (
            wm.cache_counter is None or wm.cache_counter.running_here()):
        return response
    if current_app.extensions["aggregator"]._client is None:
        return response
    try:
        _web_metrics().ensure()
    except Exception:  # try again on the next request
        pass
    return response


@bp.get("/metrics", provide_automatic_options=False)
@admin_only(open_on_loopback=True)
def metrics():
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    wm = _web_metrics()
    try:
        wm.ensure()
    except (redis.RedisError, AggregatorError, OSError) as e:
        # 200: a failed scrape would drop the one sample that says what is wrong
        return Response(f"# store unavailable: {e}\n# HELP agg_redis_up Redis reachable\n"
                        "# TYPE agg_redis_up gauge\nagg_redis_up 0\n",
                        content_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(wm.registry), content_type=CONTENT_TYPE_LATEST)
