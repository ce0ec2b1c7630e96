"""A hostile HTTP server for tests: every way a feed server can misbehave, on loopback only.

Standard library only. Modelled on the newsroom's chaos catalogue
(../shared/tools/newsroom/README.md) but self-contained: tests never read ../shared.

    server = HostileServer(hosts=4).start()       # 127.0.0.1 .. 127.0.0.4, one port each
    url = server.add("/bomb.xml", "billion_laughs", host=2)
    ...
    server.hits("/bomb.xml"), server.early_retries("/x.xml"), server.canary_hits()
    server.stop()

Each route has a *fault* (a name in FAULTS) and parameters. Routes can be served from
several loopback addresses (127.0.0.N): the worker limits polls per host name, so slow
faults on one address would otherwise queue behind each other and the test would measure
the limiter, not the fault.

Bookkeeping, for assertions:
- every request (path, time, host, headers that matter, status sent);
- Retry-After windows: after a 429/503 with Retry-After, a request to the same path
  before the window ends is counted in `early_retries(path)` (what a polite client never
  does); HTTP-dates are whole seconds, so the window ends at that second;
- the canary (`/canary...`): XSS payloads and external entities point at it; any hit
  means a browser ran a payload or a parser fetched an entity.
"""
from __future__ import annotations

import gzip
import json
import os
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

from httptest import wait_until  # noqa: F401  (re-exported for the hostile tests)

SAMPLE = Path(__file__).parent / "data" / "ant_sample.jsonl"
LOOPBACK_NET = "127.0.0."


def ant_items(src: str | None = None) -> list[dict]:
    """Real items (ANT corpus v2.1, Chouigui et al.; see tests/data), oldest first."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if src is None or r["src"] == src]


# --------------------------------------------------------------------------- documents

def rss(items: list[dict], title: str = "hostile", encoding: str = "utf-8",
        prolog: str = "", decl_encoding: str | None = None, raw: bool = False) -> bytes:
    """RSS 2.0 from item dicts {title, link, guid, date, description}; `raw` puts the
    strings in unescaped (they are already XML); `prolog` goes between the XML
    declaration and <rss> (a DOCTYPE)."""
    esc = (lambda s: s) if raw else escape
    parts = []
    for it in items:
        x = ["<item>"]
        if it.get("title") is not None:
            x.append(f"<title>{esc(it['title'])}</title>")
        if it.get("link") is not None:
            x.append(f"<link>{esc(it['link'])}</link>")
        if it.get("guid") is not None:
            x.append(f'<guid isPermaLink="false">{esc(it["guid"])}</guid>')
        if it.get("date") is not None:
            x.append(f"<pubDate>{esc(it['date'])}</pubDate>")
        if it.get("description") is not None:
            x.append(f"<description>{esc(it['description'])}</description>")
        x.append("</item>")
        parts.append("".join(x))
    decl = decl_encoding or encoding
    xml = (f'<?xml version="1.0" encoding="{decl}"?>\n{prolog}'
           '<rss version="2.0"><channel>'
           f"<title>{escape(title)}</title><link>https://example.org/</link>"
           "<description>hostile</description><language>ar</language>"
           + "".join(parts) + "</channel></rss>")
    return xml.encode(encoding, errors="xmlcharrefreplace")


def ant_rss(src: str, title: str | None = None, encoding: str = "utf-8",
            retitle: str | None = None) -> bytes:
    """A healthy feed of the real sample items of one outlet (newest first)."""
    items = []
    for it in sorted(ant_items(src), key=lambda d: d["time_utc"], reverse=True):
        items.append({"title": (retitle or "") + it["title"], "link": it["url"],
                      "guid": it["docno"], "date": it["time"], "description": it["abstract"]})
    return rss(items, title or src, encoding=encoding)


def billion_laughs(levels: int = 10) -> bytes:
    ents = ['<!ENTITY lol0 "lol">']
    for i in range(1, levels):
        ents.append(f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">')
    prolog = "<!DOCTYPE rss [\n" + "\n".join(ents) + "\n]>\n"
    return rss([{"title": f"&lol{levels - 1};", "link": "https://example.org/a", "guid": "b1"}],
               prolog=prolog, raw=True)


def quadratic_blowup(size: int = 50_000, uses: int = 20_000) -> bytes:
    prolog = f'<!DOCTYPE rss [<!ENTITY a "{"x" * size}">]>\n'
    return rss([{"title": "&a;" * uses, "link": "https://example.org/q", "guid": "q1"}],
               prolog=prolog, raw=True)


def xxe(canary: str) -> bytes:
    prolog = ('<!DOCTYPE rss [<!ENTITY file SYSTEM "file:///etc/passwd">'
              f'<!ENTITY remote SYSTEM "{canary}?xxe">]>\n')
    return rss([{"title": "&file;&remote;", "link": "https://example.org/x", "guid": "x1",
                 "description": "&remote;"}], prolog=prolog, raw=True)


def xxe_parameter(canary: str) -> bytes:
    """A parameter entity pulling an external DTD (the blind-XXE shape)."""
    prolog = f'<!DOCTYPE rss [<!ENTITY % remote SYSTEM "{canary}?param-dtd"> %remote;]>\n'
    return rss([{"title": "param", "link": "https://example.org/p", "guid": "p1"}],
               prolog=prolog, raw=True)


def external_dtd(canary: str) -> bytes:
    """No entity declarations, only an external DTD subset: must not be fetched."""
    prolog = f'<!DOCTYPE rss SYSTEM "{canary}?external-dtd">\n'
    return rss([{"title": "عنوان مع DTD خارجي", "link": "https://example.org/d", "guid": "d1",
                 "date": "Mon, 12 Mar 2018 10:00:00 GMT"}], prolog=prolog)


def utf16_bomb() -> bytes:
    """Billion laughs encoded as UTF-16 (a regex over the raw bytes would miss it)."""
    return billion_laughs().decode("utf-8").replace('encoding="utf-8"', 'encoding="utf-16"') \
        .encode("utf-16")


def malformed() -> bytes:
    """The first item's </title> is missing: not well-formed."""
    body = ant_rss("skynews")
    return body.replace(b"</title>", b"", 2).replace(b"<title>", b"<title>", 1)


def gzip_bomb(decompressed: int = 1 << 30) -> bytes:
    """`decompressed` bytes (an XML start, then zeros) as concatenated gzip members
    (RFC 1952 allows several; decoders must read them all): about 1 MB on the wire."""
    head = b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>'
    member = gzip.compress(b"\0" * (16 << 20), compresslevel=9)
    return gzip.compress(head) + member * (decompressed // (16 << 20))


_GZIP_BOMB: bytes | None = None


def _cached_gzip_bomb() -> bytes:
    global _GZIP_BOMB
    if _GZIP_BOMB is None:
        _GZIP_BOMB = gzip_bomb()
    return _GZIP_BOMB


# --------------------------------------------------------------------------- routes

@dataclass
class Route:
    fault: str
    body: bytes = b""  # the feed the fault applies to (or serves)
    params: dict = field(default_factory=dict)
    requests: int = 0
    retry_until: float = 0.0  # end of the last Retry-After window we announced
    early: int = 0  # requests that came back inside that window


class _Stop(Exception):
    pass


class HostileServer:
    def __init__(self, hosts: int = 1):
        self.routes: dict[str, Route] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.servers: list[ThreadingHTTPServer] = []
        self.threads: list[threading.Thread] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 120

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self)

            do_HEAD = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # resets and broken pipes are the point here

        for i in range(1, hosts + 1):
            httpd = Server((f"{LOOPBACK_NET}{i}", 0), Handler)
            self.servers.append(httpd)
            self.threads.append(threading.Thread(target=httpd.serve_forever, daemon=True))

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "HostileServer":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases stalled and dripping responses
        for httpd in self.servers:
            httpd.shutdown()
            httpd.server_close()

    def base(self, host: int = 1) -> str:
        httpd = self.servers[host - 1]
        return f"http://{httpd.server_address[0]}:{httpd.server_address[1]}"

    def url(self, path: str, host: int = 1) -> str:
        return self.base(host) + path

    @property
    def canary(self) -> str:
        return self.url("/canary")

    def add(self, path: str, fault: str, body: bytes = b"", host: int = 1, **params) -> str:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault}")
        self.routes[path] = Route(fault, body, params)
        return self.url(path, host)

    # -- bookkeeping ----------------------------------------------------------------------
    def hits(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def canary_hits(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == "/canary"]

    def early_retries(self, path: str | None = None) -> int:
        with self.lock:
            if path is not None:
                return self.routes[path].early
            return sum(r.early for r in self.routes.values())

    # -- serving --------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")
        now = time.time()
        record = {"path": path, "query": query, "time": now, "host": h.server.server_address[0],
                  "ua": h.headers.get("User-Agent"), "inm": h.headers.get("If-None-Match"),
                  "status": None}
        with self.lock:
            self.requests.append(record)
            route = self.routes.get(path)
            if route is not None:
                route.requests += 1
                if now < route.retry_until:
                    route.early += 1
                n = route.requests
        if path == "/canary":
            return _send(h, record, 204, b"")
        if route is None:
            return _send(h, record, 404, b"not found")
        try:
            FAULTS[route.fault](self, h, route, record, n)
        except (BrokenPipeError, ConnectionResetError, _Stop):
            h.close_connection = True

    def _announce_retry(self, route: Route, until: float) -> None:
        with self.lock:
            route.retry_until = max(route.retry_until, until)


def _send(h, record, status: int, body: bytes, headers: dict | None = None,
          ctype: str = "application/rss+xml; charset=utf-8") -> None:
    record["status"] = status
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if body or status not in (204, 304):
        h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


# --------------------------------------------------------------------------- the faults
# Each: (server, handler, route, record, n) where n is this route's request number (1-based).

def f_ok(s, h, r, rec, n):
    """A healthy feed: route.body, with an ETag and 304 on If-None-Match."""
    body = r.params.get("bodies", [r.body])[min(n, len(r.params.get("bodies", [r.body]))) - 1]
    etag = '"%x"' % zlib.crc32(body)
    if h.headers.get("If-None-Match") == etag:
        return _send(h, rec, 304, b"", {"ETag": etag})
    _send(h, rec, 200, body, {"ETag": etag}, ctype=r.params.get("ctype",
                                                                    "application/rss+xml; charset=utf-8"))


def f_status(s, h, r, rec, n):
    """status=N; retry_after='seconds' | 'date' with retry_seconds=S; on=first K requests."""
    on = r.params.get("on")
    if on is not None and n > on:
        return f_ok(s, h, r, rec, n)
    headers = {}
    if r.params.get("retry_after"):
        secs = r.params.get("retry_seconds", 120)
        if r.params["retry_after"] == "date":
            until = int(time.time()) + secs  # HTTP-dates are whole seconds
            headers["Retry-After"] = formatdate(until, usegmt=True)
        else:
            until = time.time() + secs
            headers["Retry-After"] = str(secs)
        s._announce_retry(r, until)
    _send(h, rec, r.params["status"], b"<html>error</html>", headers, ctype="text/html")


def f_slow(s, h, r, rec, n):
    """The response starts after `delay` seconds, then is a healthy feed."""
    s.stopping.wait(r.params.get("delay", 3.0))
    f_ok(s, h, r, rec, n)


def f_stall(s, h, r, rec, n):
    """Headers and the first part of the body, then nothing (the connection stays open)."""
    body = r.body
    rec["status"] = 200
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml; charset=utf-8")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body[: len(body) // 3])
    h.wfile.flush()
    s.stopping.wait(r.params.get("hold", 120))
    raise _Stop


def f_drip(s, h, r, rec, n):
    """A large declared body sent `step` bytes every `every` seconds: each read succeeds
    well inside any per-read timeout, so only a whole-response deadline ends it."""
    rec["status"] = 200
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml; charset=utf-8")
    h.send_header("Content-Length", str(r.params.get("length", 1 << 20)))
    h.end_headers()
    h.wfile.write(r.body[:200])
    h.wfile.flush()
    step, every = r.params.get("step", 16), r.params.get("every", 0.5)
    while not s.stopping.wait(every):
        h.wfile.write(b" " * step)
        h.wfile.flush()
    raise _Stop


def f_header_drip(s, h, r, rec, n):
    """The status line, then one header line every `every` seconds, forever: each read
    succeeds inside a per-read timeout, the headers never end."""
    rec["status"] = 200
    h.wfile.write(b"HTTP/1.1 200 OK\r\n")
    h.wfile.flush()
    k = 0
    while not s.stopping.wait(r.params.get("every", 1.0)):
        k += 1
        h.wfile.write(b"X-Drip-%d: 1\r\n" % k)
        h.wfile.flush()
    raise _Stop


def f_reset(s, h, r, rec, n):
    """TCP RST before any response."""
    rec["status"] = 0
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    raise _Stop


def f_truncated(s, h, r, rec, n):
    """Content-Length of the whole body, half of it sent, then the connection closes."""
    rec["status"] = 200
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml; charset=utf-8")
    h.send_header("Content-Length", str(len(r.body)))
    h.end_headers()
    h.wfile.write(r.body[: len(r.body) // 2])
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)
    raise _Stop


def f_redirect(s, h, r, rec, n):
    """status (301/302/307/308) to `to` (a path on this server or a full URL)."""
    to = r.params["to"]
    _send(h, rec, r.params.get("status", 302), b"", {"Location": to}, ctype="text/html")


def f_huge(s, h, r, rec, n):
    """A valid feed of `mb` MB (its items repeated) streamed without Content-Length."""
    rec["status"] = 200
    total = r.params.get("mb", 50) << 20
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml; charset=utf-8")
    h.send_header("Connection", "close")
    h.end_headers()
    body = r.body
    start, end = body.index(b"<item>"), body.rindex(b"</item>") + len(b"</item>")
    head, items, tail = body[:start], body[start:end], body[end:]
    h.wfile.write(head)
    sent = len(head)
    block = items * max(1, (256 * 1024) // len(items))
    while sent < total - len(tail):
        h.wfile.write(block)
        sent += len(block)
    h.wfile.write(tail)
    h.close_connection = True
    rec["bytes"] = sent + len(tail)


def f_declared_huge(s, h, r, rec, n):
    """Content-Length says 50 MB; a client should refuse before reading."""
    rec["status"] = 200
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml; charset=utf-8")
    h.send_header("Content-Length", str(50 << 20))
    h.end_headers()
    h.wfile.write(r.body)
    s.stopping.wait(5)
    raise _Stop


def f_gzip_bomb(s, h, r, rec, n):
    """Content-Encoding: gzip, ~1 MB on the wire, 1 GiB decompressed."""
    bomb = _cached_gzip_bomb()
    _send(h, rec, 200, bomb, {"Content-Encoding": "gzip"})


def f_raw(s, h, r, rec, n):
    """route.body as is, with `ctype` (a lying charset, HTML, ...)."""
    _send(h, rec, r.params.get("status", 200), r.body,
          ctype=r.params.get("ctype", "application/rss+xml; charset=utf-8"))


FAULTS = {
    "ok": f_ok,
    "status": f_status,
    "slow": f_slow,
    "stall": f_stall,
    "drip": f_drip,
    "header_drip": f_header_drip,
    "reset": f_reset,
    "truncated": f_truncated,
    "redirect": f_redirect,
    "huge": f_huge,
    "declared_huge": f_declared_huge,
    "gzip_bomb": f_gzip_bomb,
    "raw": f_raw,
}


# --------------------------------------------------------------------------- the worker

ROOT = Path(__file__).resolve().parents[1]


def feeds_yaml(sources: dict[str, str], interval: str = "1m") -> str:
    """sources: id -> url."""
    lines = ["defaults:", f"  interval: {interval}", "sources:"]
    for sid, url in sources.items():
        lines += [f"  - id: {sid}", f'    url: "{url}"', f"    title: {sid}",
                  "    country: AE", "    tags: [test]"]
    return "\n".join(lines) + "\n"


def worker_env(redis_url: str, prefix: str, feeds_path, private: bool = True,
               data_dir=None) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_")}
    env.update(REDIS_URL=redis_url, AGG_KEY_PREFIX=prefix, AGG_FEEDS=str(feeds_path),
               PYTHONUNBUFFERED="1")
    if data_dir is not None:
        env["AGG_DATA_DIR"] = str(data_dir)
    if private:
        env["AGG_ALLOW_PRIVATE_NETWORKS"] = "1"
    return env


def start_worker(args, env, stdout=None, stderr=None):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, str(ROOT / "worker.py"), *args], cwd=ROOT, env=env,
                            stdout=stdout or subprocess.PIPE, stderr=stderr or subprocess.PIPE,
                            text=True)


def stats_json(env) -> dict:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "aggregator", "stats", "--json"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


class PeakRSS:
    """Samples /proc/<pid>/status VmHWM (the kernel's own high-water mark of resident
    memory) of a process and of every process below it until it exits. The worker fetches
    and parses in helper processes, children of its fork server: a body buffered there
    must show. `peaks_kb`: the highest value read per pid."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every = pid, every
        self.peaks_kb: dict[int, int] = {}
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += [int(child) for child in f.read().split()]
            except OSError:
                pass
        return pids

    @staticmethod
    def _hwm_kb(pid: int) -> int | None:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None  # gone, or a zombie (no memory lines)

    def _run(self) -> None:
        while True:
            for pid in self._tree():
                kb = self._hwm_kb(pid)
                if kb is not None:
                    self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), kb)
                elif pid == self.pid:
                    return
            time.sleep(self.every)

    def join(self, timeout: float = 5) -> float:
        """The highest peak of any one process, in MB."""
        self._t.join(timeout)
        return max(self.peaks_kb.values(), default=0) / 1024


