"""A real HTTP server on 127.0.0.1 that serves RSS built from real ANT items.

Tests move items in and out, retitle them, switch encodings and queue faults; the server
records every request it answers so tests can assert on what the client sent.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

SAMPLE = Path(__file__).parent / "data" / "ant_sample.jsonl"


def ant_items(src: str | None = None) -> list[dict]:
    """Real items (ANT corpus v2.1, Chouigui et al., Apache-2.0), oldest first."""
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if src is None or r["src"] == src]


def render_rss(title: str, items: list[dict], encoding: str = "utf-8") -> bytes:
    entries = []
    for it in sorted(items, key=lambda d: d["time_utc"], reverse=True):
        entries.append(
            "<item>"
            f"<title>{escape(it['title'])}</title>"
            f"<link>{escape(it['url'])}</link>"
            f"<guid isPermaLink=\"false\">{escape(it['docno'])}</guid>"
            f"<pubDate>{escape(it['time'])}</pubDate>"
            f"<description>{escape(it['abstract'])}</description>"
            "</item>"
        )
    xml = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>"
        "<description>test</description><language>ar</language>"
        + "".join(entries)
        + "</channel></rss>"
    )
    # Characters outside the code page become character references, as CNN's feed does.
    return xml.encode(encoding, errors="xmlcharrefreplace")


@dataclass
class Fault:
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


@dataclass
class Feed:
    title: str
    items: list[dict]
    encoding: str = "utf-8"
    conditional: bool = True  # False: ignore validators, like Al Arabiya
    faults: list[Fault] = field(default_factory=list)  # consumed one per request

    def body(self) -> bytes:
        return render_rss(self.title, self.items, self.encoding)


class FeedServer:
    def __init__(self):
        self.feeds: dict[str, Feed] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def url(self, path: str) -> str:
        return self.base + path

    def start(self) -> "FeedServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def hits(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        record = {"path": path, "time": time.time(), "inm": h.headers.get("If-None-Match"),
                  "ims": h.headers.get("If-Modified-Since"), "ua": h.headers.get("User-Agent")}
        feed = self.feeds.get(path)
        fault = None
        with self.lock:
            if feed is not None and feed.faults:
                fault = feed.faults.pop(0)
        if feed is None and path.startswith("/redirect/"):
            fault = Fault(301, {"Location": path[len("/redirect"):]})
        if fault is not None and fault.status != 200 or feed is None:
            fault = fault or Fault(404, body=b"not found")
            time.sleep(fault.delay)
            record["status"] = fault.status
            with self.lock:
                self.requests.append(record)
            h.send_response(fault.status)
            for k, v in fault.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(fault.body)))
            h.end_headers()
            h.wfile.write(fault.body)
            return
        if fault is not None:
            time.sleep(fault.delay)
        body = fault.body if fault and fault.body else feed.body()
        etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
        newest = max((it["time_utc"] for it in feed.items), default="1970-01-01T00:00:00+00:00")
        from datetime import datetime

        last_modified = formatdate(datetime.fromisoformat(newest).timestamp(), usegmt=True)
        not_modified = feed.conditional and (
            h.headers.get("If-None-Match") == etag
            or (h.headers.get("If-None-Match") is None
                and h.headers.get("If-Modified-Since") == last_modified)
        )
        record["status"] = 304 if not_modified else 200
        with self.lock:
            self.requests.append(record)
        if not_modified:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return
        gz = fault is None and "gzip" in (h.headers.get("Accept-Encoding") or "")
        payload = gzip.compress(body) if gz else body
        h.send_response(200)
        for k, v in (fault.headers if fault else {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", f"application/rss+xml; charset={feed.encoding}")
        h.send_header("ETag", etag)
        h.send_header("Last-Modified", last_modified)
        if gz:
            h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
