"""The fetcher against a real HTTP server on 127.0.0.1."""
import gzip
import socket
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aggregator.fetch import Fetcher, is_public_address, parse_retry_after
from aggregator.settings import Settings
from aggregator.types import Outcome, SourceState

from feedserver import Fault, Feed, FeedServer, ant_items
from httptest import serving

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def server():
    s = FeedServer().start()
    s.feeds["/bbc.xml"] = Feed("BBC", ant_items("BBC")[:5])
    yield s
    s.stop()


def fetcher(**kw):
    return Fetcher(Settings(allow_private_networks=True, fetch_timeout=2.0, **kw))


def test_conditional_get_sends_validators_and_gets_304(server):
    f = fetcher()
    first = f.fetch(server.url("/bbc.xml"), SourceState(), NOW)
    assert first.outcome is Outcome.OK and first.http_status == 200 and first.etag
    assert "بي" in first.body.decode() or first.body.startswith(b"<?xml")
    state = SourceState(etag=first.etag, last_modified=first.last_modified,
                        body_hash=first.body_hash)
    second = f.fetch(server.url("/bbc.xml"), state, NOW)
    assert second.outcome is Outcome.NOT_MODIFIED and second.http_status == 304
    hit = server.hits("/bbc.xml")[-1]
    assert hit["inm"] == first.etag and hit["status"] == 304
    assert hit["ua"].startswith("ArabicNewsAggregator/")


def test_body_hash_skips_unchanged_content_when_validators_are_ignored(server):
    server.feeds["/bbc.xml"].conditional = False
    f = fetcher()
    first = f.fetch(server.url("/bbc.xml"), SourceState(), NOW)
    again = f.fetch(server.url("/bbc.xml"), SourceState(etag=first.etag,
                                                         body_hash=first.body_hash), NOW)
    assert server.hits("/bbc.xml")[-1]["status"] == 200
    assert again.outcome is Outcome.NOT_MODIFIED and again.body is None


@pytest.mark.parametrize("status, outcome", [
    (500, Outcome.HTTP_5XX), (502, Outcome.HTTP_5XX), (404, Outcome.HTTP_4XX),
    (403, Outcome.HTTP_4XX), (410, Outcome.GONE), (429, Outcome.RATE_LIMITED),
])
def test_http_errors_are_classified(server, status, outcome):
    server.feeds["/bbc.xml"].faults.append(Fault(status, body=b"x"))
    r = fetcher().fetch(server.url("/bbc.xml"), SourceState(), NOW)
    assert r.outcome is outcome and r.http_status == status


def test_retry_after_seconds_and_date(server):
    feed = server.feeds["/bbc.xml"]
    feed.faults.append(Fault(503, {"Retry-After": "120"}))
    r = fetcher().fetch(server.url("/bbc.xml"), SourceState(), NOW)
    assert r.outcome is Outcome.HTTP_5XX and r.retry_after == NOW + timedelta(seconds=120)
    assert parse_retry_after("Sun, 29 Nov 2026 12:01:00 GMT", NOW) == NOW + timedelta(minutes=1)
    assert parse_retry_after("soon", NOW) is None


def test_redirects_followed_and_permanent_ones_suggested(server):
    r = fetcher().fetch(server.url("/redirect/bbc.xml"), SourceState(), NOW)
    assert r.outcome is Outcome.OK and r.final_url == server.url("/bbc.xml")
    assert r.permanent_redirect == server.url("/bbc.xml")


def test_redirect_loop_is_bounded(server):
    server.feeds["/loop.xml"] = Feed("loop", [])
    server.feeds["/loop.xml"].faults.extend(Fault(302, {"Location": "/loop.xml"}) for _ in range(10))
    r = fetcher().fetch(server.url("/loop.xml"), SourceState(), NOW)
    assert r.outcome is Outcome.TOO_MANY_REDIRECTS
    assert len(server.hits("/loop.xml")) == 6


def test_body_cap_applies_after_decompression(server):
    bomb = gzip.compress(b"<rss>" + b" " * (3 * 1024 * 1024) + b"</rss>")
    server.feeds["/bomb.xml"] = Feed("bomb", [])
    server.feeds["/bomb.xml"].faults.append(Fault(200, {"Content-Encoding": "gzip"}, body=bomb))
    r = fetcher(max_body_bytes=1024 * 1024).fetch(server.url("/bomb.xml"), SourceState(), NOW)
    assert len(bomb) < 1024 * 1024
    assert r.outcome is Outcome.TOO_LARGE
    assert r.error == "body larger than the 1,048,576-byte cap"


def test_slow_response_times_out(server):
    server.feeds["/bbc.xml"].faults.append(Fault(500, delay=3.0))
    r = fetcher().fetch(server.url("/bbc.xml"), SourceState(), NOW)
    assert r.outcome is Outcome.TIMEOUT and r.elapsed < 3.0
    assert r.error == f"127.0.0.1:{server.httpd.server_port} sent nothing for 2 s (ReadTimeoutError)"


def test_connection_refused_and_dns():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    f = fetcher()
    refused = f.fetch(f"http://127.0.0.1:{port}/x", SourceState(), NOW)
    assert refused.outcome is Outcome.CONNECT
    assert refused.error == f"connection refused by 127.0.0.1:{port} (NewConnectionError)"
    unknown = f.fetch("http://no-such-host.invalid/x", SourceState(), NOW)
    assert unknown.outcome is Outcome.DNS
    assert unknown.error == "host name not found: no-such-host.invalid (NameResolutionError)"


def test_reset_before_response_is_a_protocol_failure():
    class Reset(BaseHTTPRequestHandler):
        def do_GET(self):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.request.close()

        def log_message(self, *a):
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Reset)) as httpd:
        r = fetcher().fetch(f"http://127.0.0.1:{httpd.server_port}/", SourceState(), NOW)
    assert r.outcome is Outcome.PROTOCOL, r
    assert r.error == f"127.0.0.1:{httpd.server_port} reset the connection (ProtocolError)"


def test_a_body_cut_short_says_how_much_arrived():
    class Truncated(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"<rss>" + b" " * 5)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *a):
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Truncated)) as httpd:
        r = fetcher().fetch(f"http://127.0.0.1:{httpd.server_port}/", SourceState(), NOW)
    assert r.outcome is Outcome.PROTOCOL
    assert r.error == "the response ended early: 10 bytes received, 990 more expected (ProtocolError)"


def test_tls_to_a_plain_http_server_is_a_tls_failure(server):
    r = fetcher().fetch(server.url("/bbc.xml").replace("http://", "https://"), SourceState(), NOW)
    assert r.outcome is Outcome.TLS
    assert r.error == "TLS handshake failed: wrong version number (SSLError)"


def test_ssrf_guard_refuses_loopback_before_connecting(server):
    r = Fetcher(Settings()).fetch(server.url("/bbc.xml"), SourceState(), NOW)
    assert r.outcome is Outcome.BLOCKED and "AGG_ALLOW_PRIVATE_NETWORKS" in r.error
    assert server.hits("/bbc.xml") == []


@pytest.mark.parametrize("ip, public", [
    ("8.8.8.8", True), ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False),
    ("172.16.5.4", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("::1", False), ("fc00::1", False), ("fe80::1", False), ("::ffff:127.0.0.1", False),
    ("2001:4860:4860::8888", True), ("224.0.0.1", False),
])
def test_public_address_table(ip, public):
    assert is_public_address(ip) is public
