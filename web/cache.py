"""Rendered-output cache: bytes per output and parameters, valid for one store version.

`Store.outputs_version()` is bumped in the same transaction as every item (and story)
change, so "cached bytes for version V" is exact: nothing is served that a newer poll
has made stale, and nothing is re-rendered that has not changed.

Three ways an output reaches a reader, fastest first:
  1. nginx serves a file written by `prerender` (deploy/nginx.conf, try_files); the
     `watch` loop rewrites the hot files within ~0.2 s of a version bump;
  2. `FastPath`, a WSGI layer in front of Flask, answers a cached output (200/304/HEAD,
     gzip) without building a Flask request;
  3. the Flask view in web/feeds.py renders, stores, and answers.
All three send the same body, Content-Type and CORS/Cache-Control headers (the files'
ETag/Last-Modified come from nginx, see deploy/README.md).

    python -m web.cache prerender --out DIR [--all]              # once
    python -m web.cache watch --out DIR [--interval .2] [--all]  # keep DIR current
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import logging
import os
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime

from .headers import SECURITY_HEADERS

log = logging.getLogger(__name__)

# Readers may use a copy for a minute (our polls are minutes apart), and a stale copy
# while they revalidate; on our errors a day-old copy beats nothing.
CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=300, stale-if-error=86400"
VERSION_TTL = 0.2  # seconds a process trusts its last read of the version key


@dataclass(frozen=True)
class Rendered:
    body: bytes
    gz: bytes
    etag: str  # strong, of the identity bytes
    etag_gz: str  # strong, of the gzip bytes: a different representation, a different tag
    last_modified: float  # unix seconds (whole)
    content_type: str
    self_url: str
    version: int

    # The four header lists (200/304 x identity/gzip), built once: a hot request only
    # picks one. Filled in __post_init__ (the dataclass is frozen).
    headers_for: dict = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        common = self.common_headers()
        table = {}
        for gz in (False, True):
            etag = [("ETag", self.etag_gz if gz else self.etag)]
            body = self.gz if gz else self.body
            table[(304, gz)] = common + etag
            table[(200, gz)] = common + etag + [("Content-Type", self.content_type)] + (
                [("Content-Encoding", "gzip")] if gz else []) + [
                ("Content-Length", str(len(body)))]
        object.__setattr__(self, "headers_for", table)

    @classmethod
    def build(cls, body: bytes, content_type: str, last_modified: datetime, self_url: str,
              version: int) -> "Rendered":
        digest = hashlib.sha256(body).hexdigest()[:32]
        buf = io.BytesIO()
        # mtime=0: the same bytes in every worker, so the gzip ETag is stable too.
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as f:
            f.write(body)
        return cls(
            body=body, gz=buf.getvalue(), etag=f'"{digest}"', etag_gz=f'"{digest}-gz"',
            last_modified=float(int(last_modified.timestamp())), content_type=content_type,
            self_url=self_url, version=version,
        )

    def common_headers(self) -> list[tuple]:
        return [
            ("Cache-Control", CACHE_CONTROL),
            ("Vary", "Accept-Encoding"),
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", "ETag, Last-Modified, Link"),
            ("Link", f'<{self.self_url}>; rel="self"'),
            ("Last-Modified", http_date(self.last_modified)),
            *SECURITY_HEADERS,
        ]


def http_date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, timezone.utc), usegmt=True)


def accepts_gzip(header: str | None) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 12.5.3): its own q-value if listed
    (gzip or x-gzip), else that of '*', else no. 'q' is case-insensitive; q=0 refuses."""
    named = star = None
    for part in (header or "").split(","):
        coding, *params = (x.strip() for x in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = max(named or 0.0, q)
        elif coding == "*":
            star = q
    chosen = named if named is not None else star
    return chosen is not None and chosen > 0


def _etag_matches(header: str, tags: tuple[str, ...]) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    for candidate in header.split(","):
        c = candidate.strip()
        if c.startswith("W/"):
            c = c[2:]
        if c in tags:
            return True
    return False


def respond(r: Rendered, environ: dict) -> tuple[str, list[tuple], bytes]:
    """Status, headers and body for one request of a rendered output (pure). The body is
    returned for HEAD too (its length is the Content-Length); the server drops it."""
    ae = environ.get("HTTP_ACCEPT_ENCODING")
    gz = accepts_gzip(ae) if ae else False
    inm = environ.get("HTTP_IF_NONE_MATCH")
    ims = environ.get("HTTP_IF_MODIFIED_SINCE")
    not_modified = False
    if inm is not None:
        # Either representation's tag: a reader that switched encodings still has the bytes.
        not_modified = _etag_matches(inm, (r.etag, r.etag_gz))
    elif ims:
        try:
            not_modified = r.last_modified <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            not_modified = False
    # Copies: servers may append to the list they are given (Date, Server).
    if not_modified:
        return "304 Not Modified", list(r.headers_for[(304, gz)]), b""
    return "200 OK", list(r.headers_for[(200, gz)]), (r.gz if gz else r.body)


class VersionClock:
    """The store's outputs version, read from Redis at most every `ttl` seconds."""

    def __init__(self, read, ttl: float = VERSION_TTL):
        self._read = read
        self._ttl = ttl
        self._value: int | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def current(self) -> int:
        now = time.monotonic()
        if self._value is None or now - self._at >= self._ttl:
            with self._lock:
                if self._value is None or now - self._at >= self._ttl:
                    self._value = self._read()
                    self._at = time.monotonic()
        return self._value


class OutputCache:
    """In-process LRU of Rendered, keyed by (path, query string); an entry counts only
    for the version it was rendered at. Per process: a gunicorn worker renders each
    output once per change."""

    def __init__(self, max_entries: int = 512, max_bytes: int = 64 * 1024 * 1024):
        self._data: OrderedDict[tuple, Rendered] = OrderedDict()
        self._max = max_entries
        # Bytes held, so ?q=/?before= variety cannot grow a worker without bound.
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._render_locks: dict[tuple, threading.Lock] = {}
        self.hits = 0
        self.misses = 0  # lookups: FastPath and the view both look before a render
        self.renders = 0  # outputs rendered and stored (the misses that cost a render)

    def get(self, key: tuple, version: int) -> Rendered | None:
        r = self._data.get(key)
        if r is not None and r.version == version:
            self.hits += 1
            try:
                self._data.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return r
        self.misses += 1
        return None

    def render_lock(self, key: tuple) -> threading.Lock:
        """One render per output at a time (see web.feeds._serve)."""
        with self._lock:
            lock = self._render_locks.get(key)
            if lock is None:
                if len(self._render_locks) > 4 * self._max:
                    self._render_locks = {k: v for k, v in self._render_locks.items()
                                          if v.locked()}
                lock = self._render_locks[key] = threading.Lock()
            return lock

    def latest(self, key: tuple) -> Rendered | None:
        """Whatever version is held: served when Redis cannot say which is current
        (Cache-Control promises stale-if-error; a reader prefers old news to a 500)."""
        return self._data.get(key)

    def put(self, key: tuple, r: Rendered) -> None:
        with self._lock:
            # Last write wins, even from a slower render of an older version: `get` checks
            # the version, so that costs one re-render, never a stale answer; refusing it
            # instead would pin a dead entry forever if the version counter ever restarts
            # lower (a new Redis).
            old = self._data.get(key)
            if old is not None:
                self._bytes -= len(old.body) + len(old.gz)
            self._data[key] = r
            self.renders += 1  # counted for /metrics (aggregator/metrics.py CacheCounter)
            self._bytes += len(r.body) + len(r.gz)
            self._data.move_to_end(key)
            while len(self._data) > 1 and (len(self._data) > self._max
                                           or self._bytes > self._max_bytes):
                _k, gone = self._data.popitem(last=False)
                self._bytes -= len(gone.body) + len(gone.gz)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0


def request_key(environ: dict, public_url: str | None = None) -> tuple:
    """Cache key of a request: raw path and query (as WSGI gives them, so Arabic paths
    match byte for byte) — plus scheme and Host when no public URL is configured, since
    links inside the output are then built from them: otherwise one request with a forged
    Host header would put its links in everyone's copy."""
    key = (environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
    if public_url:
        return key
    return key + (environ.get("wsgi.url_scheme", "http"), environ.get("HTTP_HOST", ""))


class FastPath:
    """WSGI layer: a GET/HEAD of a cached output at the current version is answered here,
    before Flask builds a request, routes, and runs the view. Anything else passes on."""

    def __init__(self, wsgi_app, cache: OutputCache, clock_factory, prefix: str = "/feeds/",
                 key_fn=None, on_error=None):
        self.wsgi_app = wsgi_app
        self._on_error = on_error  # counts a Redis error it answered (web.ops metrics)
        self.cache = cache
        self._clock_factory = clock_factory
        self._key_fn = key_fn or request_key
        self._clock: VersionClock | None = None
        self.prefix = prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix) and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            key = self._key_fn(environ)
            try:
                if self._clock is None:
                    self._clock = self._clock_factory()
                r = self.cache.get(key, self._clock.current())
            except Exception:  # Redis down: the last bytes we have, else Flask reports it
                log.warning("outputs version unreadable; serving cached bytes", exc_info=True)
                r = self.cache.latest(key)
                if r is not None and self._on_error is not None:
                    self._on_error()  # (without bytes the view answers, and counts it)
            if r is not None:
                status, headers, body = respond(r, environ)
                start_response(status, headers)
                return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
        return self.wsgi_app(environ, start_response)


# --- pre-rendering to files (served by nginx: deploy/nginx.conf) ------------------------

def hot_paths(app, everything: bool = False) -> list[str]:
    """The outputs readers poll most: every format of the combined feed, with default
    parameters. `everything` adds each configured source, tag and country.

    Why not everything by default: one output renders in 30-80 ms (ANT March set), so
    ~40 outputs take ~2 s per store change and the last files would lag a new item by
    more than a second; the combined feeds take ~0.15 s. Outputs without a file are
    served by gunicorn's fast path (web.cache.FastPath), fresh within VERSION_TTL."""
    paths = [f"/feeds/all.{fmt}" for fmt in ("atom", "rss", "json")]
    if not everything:
        return paths
    try:
        with app.app_context():
            from .feeds import configured_sources

            sources = configured_sources()
    except Exception:  # no feeds.yaml: the combined feed is still worth writing
        log.warning("prerender: no sources configured; writing /feeds/all.* only")
        sources = {}
    tags = sorted({t for s in sources.values() for t in s.tags})
    countries = sorted({s.country.upper() for s in sources.values() if s.country})
    for fmt in ("rss", "atom", "json"):
        paths += [f"/feeds/sources/{sid}.{fmt}" for sid in sorted(sources)]
        paths += [f"/feeds/tags/{t}.{fmt}" for t in tags]
        paths += [f"/feeds/countries/{c}.{fmt}" for c in countries]
    return paths


def _write_atomic(path: str, data: bytes, mtime: float) -> bool:
    """Write only when the bytes changed (nginx's ETag/Last-Modified then stay put)."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)  # readers see the old file or the new one, never half
    return True


def prerender(app, out_dir: str, paths: list[str] | None = None) -> dict[str, int]:
    """Render `paths` through the app (same code, same bytes as a live request) into
    out_dir/<path> plus a .gz twin for nginx's gzip_static. Returns {path: status}."""
    paths = paths if paths is not None else hot_paths(app)
    client = app.test_client()
    # Links inside the files must name the public site, not the test client's localhost.
    base = app.config.get("AGG_PUBLIC_URL") or os.environ.get("AGG_PUBLIC_URL") or None
    result = {}
    for path in paths:
        kw = {"base_url": base} if base else {}
        resp = client.get(path, headers={"Accept-Encoding": "identity"}, **kw)
        result[path] = resp.status_code
        target = os.path.join(out_dir, path.lstrip("/"))
        if resp.status_code != 200:
            # An output that vanished (source removed) must not linger as a file.
            for p in (target, target + ".gz"):
                if os.path.exists(p):
                    os.unlink(p)
            continue
        body = resp.get_data()
        lm = resp.headers.get("Last-Modified")
        mtime = parsedate_to_datetime(lm).timestamp() if lm else time.time()
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as f:
            f.write(body)
        _write_atomic(target, body, mtime)
        _write_atomic(target + ".gz", buf.getvalue(), mtime)
    return result


def watch(app, out_dir: str, interval: float = 0.2, stop: threading.Event | None = None,
          paths: list[str] | None = None) -> None:
    """Re-render the hot files whenever the outputs version moves (checked every
    `interval` seconds), so a polled item is in the files well within a second."""
    from .extensions import services

    with app.app_context():
        store = services().store
    last = None
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            v = store.outputs_version()
            if v != last:
                t0 = time.monotonic()
                prerender(app, out_dir, paths)
                log.info("prerendered version %s in %.0f ms", v, 1000 * (time.monotonic() - t0))
                last = v
        except Exception:
            log.exception("prerender failed; retrying")
        stop.wait(interval)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m web.cache")
    ap.add_argument("command", choices=["prerender", "watch"])
    ap.add_argument("--out", required=True, help="directory nginx serves (deploy/nginx.conf)")
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--path", action="append", help="output path(s); default: hot outputs")
    ap.add_argument("--all", action="store_true",
                    help="also every configured source, tag and country (slower refresh)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from . import create_app

    app = create_app()
    if not (app.config.get("AGG_PUBLIC_URL") or os.environ.get("AGG_PUBLIC_URL")):
        # the files' self/next links and entry ids would name http://localhost/, and differ
        # from what gunicorn answers for the same URL
        print("AGG_PUBLIC_URL is not set: the files carry links and entry ids built from "
              "it (https://news.example/); set it as for the web app", file=sys.stderr)
        return 2
    paths = args.path or hot_paths(app, everything=args.all)
    if args.command == "prerender":
        res = prerender(app, args.out, paths)
        bad = {p: s for p, s in res.items() if s != 200}
        print(f"wrote {len(res) - len(bad)} outputs to {args.out}", file=sys.stderr)
        for p, s in bad.items():
            print(f"  {p}: HTTP {s}", file=sys.stderr)
        return 0
    watch(app, args.out, args.interval, paths=paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
