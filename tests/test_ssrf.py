"""SSRF: with default settings (AGG_ALLOW_PRIVATE_NETWORKS unset) a feed on a loopback or
private address is refused before any connection, at every redirect hop, and the
source's state says why (outcome `blocked` and the message).

The redirect case needs a first hop that is allowed. Every server a test can run is on
loopback, so the honest way is to let the guard's classifier call *one* loopback address
(127.0.0.2) "public" and leave everything else as it is: the request to 127.0.0.2 goes
through, its redirect to 127.0.0.1 / localhost / [::1] must be refused by the same guard
code at the next hop, and the server on 127.0.0.1 must see nothing. That is done both in
process (Fetcher) and in the real worker (worker.py --once, with the classifier patched
by a two-line wrapper before main() runs).
"""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone

import pytest

import aggregator.fetch as fetch_mod
from aggregator.fetch import Fetcher, vet_host
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.types import Outcome, SourceState
from hostile_server import (
    ROOT, HostileServer, ant_rss, feeds_yaml, start_worker, stats_json, worker_env,
)

UTC = timezone.utc
FAKE_PUBLIC = "127.0.0.2"


@pytest.fixture
def server():
    s = HostileServer(hosts=2).start()  # 127.0.0.1 (private) and 127.0.0.2 (plays public)
    yield s
    s.stop()


def private_urls(server: HostileServer) -> dict[str, str]:
    """The same loopback server under the spellings an attacker would try."""
    port = server.servers[0].server_address[1]
    server.add("/feed.xml", "ok", ant_rss("BBC"))
    return {
        "loopback": f"http://127.0.0.1:{port}/feed.xml",
        "localhost": f"http://localhost:{port}/feed.xml",
        "short-ip": f"http://127.1:{port}/feed.xml",
        "decimal-ip": f"http://2130706433:{port}/feed.xml",
        "zero": f"http://0.0.0.0:{port}/feed.xml",
        "mapped-v6": f"http://[::ffff:127.0.0.1]:{port}/feed.xml",
        "v6-loopback": f"http://[::1]:{port}/feed.xml",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "rfc1918": "http://10.0.0.1/feed.xml",
        "cgnat": "http://100.64.0.1/feed.xml",
    }


def test_worker_refuses_private_addresses_before_connecting(server, redis_url, redis_client,
                                                           keys, tmp_path):
    urls = private_urls(server)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds, private=False)
    assert "AGG_ALLOW_PRIVATE_NETWORKS" not in env
    proc = start_worker(["--once"], env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, out + err  # every source failed
    assert not server.requests, server.requests  # not one connection got as far as HTTP
    stats = stats_json(env)["sources"]
    store = Store(redis_client, keys)
    for sid in urls:
        st = store.load_state(sid)
        assert stats[sid]["last_status"] == "blocked", (sid, st.last_error)
        assert "non-public address" in st.last_error and \
            "AGG_ALLOW_PRIVATE_NETWORKS=1" in st.last_error, (sid, st.last_error)
        assert st.last_http_status is None
    assert "127.0.0.1" in store.load_state("loopback").last_error


def test_the_same_sources_are_fetched_when_private_networks_are_allowed(server):
    """The control: the refusal above is the guard, not a broken URL."""
    urls = private_urls(server)
    fetcher = Fetcher(Settings(allow_private_networks=True))
    try:
        for sid in ("loopback", "localhost", "short-ip", "decimal-ip", "mapped-v6"):
            r = fetcher.fetch(urls[sid], SourceState(), datetime.now(UTC))
            assert r.outcome is Outcome.OK, (sid, r.error)
    finally:
        fetcher.close()


@pytest.fixture
def fake_public(monkeypatch):
    real = fetch_mod.is_public_address
    monkeypatch.setattr(fetch_mod, "is_public_address",
                        lambda ip: ip == FAKE_PUBLIC or real(ip))


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_redirect_from_a_public_hop_to_a_private_address_is_refused(server, fake_public,
                                                                     target):
    port = server.servers[0].server_address[1]
    server.add("/secret.xml", "ok", ant_rss("BBC"))
    start = server.add("/go.xml", "redirect", host=2, status=302,
                       to=f"http://{target}:{port}/secret.xml")
    fetcher = Fetcher(Settings())  # defaults: private networks refused
    try:
        r = fetcher.fetch(start, SourceState(), datetime.now(UTC))
    finally:
        fetcher.close()
    assert r.outcome is Outcome.BLOCKED, r.error
    assert "non-public address" in r.error
    assert r.final_url.endswith("/secret.xml")
    assert [h["path"] for h in server.requests] == ["/go.xml"]  # the first hop only
    assert server.requests[0]["host"] == FAKE_PUBLIC


def test_a_public_hop_alone_is_fetched(server, fake_public):
    """The control for the redirect test: the fake-public address really is allowed."""
    url = server.add("/ok.xml", "ok", ant_rss("BBC"), host=2)
    fetcher = Fetcher(Settings())
    try:
        r = fetcher.fetch(url, SourceState(), datetime.now(UTC))
    finally:
        fetcher.close()
    assert r.outcome is Outcome.OK, r.error


def test_a_name_resolving_to_public_and_private_addresses_is_refused(monkeypatch):
    """DNS answers mixing a public and a private address (rebinding shapes) are refused
    whole; the address connected to is the one that was checked."""
    def resolver(host, port, *a, **kw):
        return [(2, 1, 6, "", ("93.184.216.34", port)), (2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(fetch_mod.socket, "getaddrinfo", resolver)
    with pytest.raises(fetch_mod.BlockedAddress, match="127.0.0.1"):
        vet_host("rebind.test", 80, allow_private=False)
    assert vet_host("rebind.test", 80, allow_private=True) == "93.184.216.34"


WRAPPER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import aggregator.fetch as f
real = f.is_public_address
f.is_public_address = lambda ip: ip == {FAKE_PUBLIC!r} or real(ip)
import worker
sys.exit(worker.main(["--once"]))
"""


def test_worker_refuses_a_redirect_to_loopback_and_says_why(server, redis_url, redis_client,
                                                            keys, tmp_path):
    port = server.servers[0].server_address[1]
    server.add("/secret.xml", "ok", ant_rss("BBC"))
    urls = {
        "redirects-to-loopback": server.add("/go.xml", "redirect", host=2, status=301,
                                            to=f"http://localhost:{port}/secret.xml"),
        "public": server.add("/public.xml", "ok", ant_rss("CNN"), host=2),
    }
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds, private=False)
    # polls in the worker's own threads: the wrapper's stand-in public address exists only
    # in its process, not in the feed-reading processes that would otherwise fetch
    env["AGG_PARSE_PROCESSES"] = "0"
    proc = subprocess.run([sys.executable, "-c", WRAPPER], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [h for h in server.requests if h["host"] == "127.0.0.1"]
    stats = stats_json(env)["sources"]
    st = Store(redis_client, keys).load_state("redirects-to-loopback")
    assert stats["redirects-to-loopback"]["last_status"] == Outcome.BLOCKED.value
    assert "localhost resolves to non-public address" in st.last_error
    assert stats["public"]["last_status"] == "ok" and stats["public"]["items"] == 16
