"""Failed admin logins are limited per client address (web/ops.py FailureLimiter): after N
failures in the window the address gets 429 with Retry-After, its credentials unchecked,
on every admin surface; other addresses are unaffected; the client address behind our own
nginx is the one nginx appended to X-Forwarded-For, never one a remote client claims."""
from __future__ import annotations

import base64
import time

import pytest

from web import create_app
import web.ops

TOKEN = "a-long-token"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
BAD = {"Authorization": "Bearer guess"}


@pytest.fixture
def client(redis_client, keys, tmp_path):
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text("sources: []\n", encoding="utf-8")
    app = create_app({"TESTING": True, "REDIS_CLIENT": redis_client,
                      "AGG_KEY_PREFIX": keys.prefix, "AGG_FEEDS": str(feeds),
                      "AGG_STATUS_TOKEN": TOKEN, "AGG_STATUS_USER": "ops",
                      "AGG_STATUS_PASSWORD": "pw", "AGG_ADMIN_MAX_FAILURES": 3,
                      "AGG_ADMIN_FAILURE_WINDOW": 1.0})
    return app.test_client()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def remote(addr):
    return {"REMOTE_ADDR": addr}


def test_429_after_n_failures_without_checking_credentials(client, monkeypatch):
    a = remote("198.51.100.7")
    assert client.get("/status.json", headers=BAD, environ_base=a).status_code == 401
    assert client.get("/metrics", headers=basic("ops", "nope"), environ_base=a).status_code == 401
    assert client.get("/status?token=guess", environ_base=a).status_code == 401
    compared = []
    real = web.ops.hmac.compare_digest
    monkeypatch.setattr(web.ops.hmac, "compare_digest",
                        lambda x, y: compared.append(x) or real(x, y))
    for path in ("/status", "/status.json", "/metrics"):
        resp = client.get(path, headers=GOOD, environ_base=a)  # right, but too late
        assert resp.status_code == 429, path
        assert 1 <= int(resp.headers["Retry-After"]) <= 1
        assert resp.headers["Cache-Control"] == "no-store"
    assert compared == []  # nothing was compared for a blocked address
    # another address is not affected
    assert client.get("/status.json", headers=GOOD,
                      environ_base=remote("203.0.113.1")).status_code == 200
    time.sleep(1.05)  # the window passes
    assert client.get("/status.json", headers=GOOD, environ_base=a).status_code == 200


def test_bare_requests_do_not_count_and_success_resets(client):
    a = remote("198.51.100.8")
    for _ in range(5):  # a browser's first request, before it asks for the password
        assert client.get("/status", environ_base=a).status_code == 401
    for _ in range(2):
        assert client.get("/status", headers=BAD, environ_base=a).status_code == 401
    assert client.get("/status", headers=basic("ops", "pw"), environ_base=a).status_code == 200
    for _ in range(2):  # the count started again after the success
        assert client.get("/status", headers=BAD, environ_base=a).status_code == 401
    assert client.get("/status", headers=GOOD, environ_base=a).status_code == 200


def test_address_behind_our_proxy_is_the_one_it_appended(client):
    via_nginx = remote("127.0.0.1")
    # Three guessers behind nginx: each has its own count (nginx appends the real peer last)…
    for i in range(3):
        for _ in range(2):
            resp = client.get("/status", headers=BAD | {"X-Forwarded-For": f"192.0.2.{i}"},
                              environ_base=via_nginx)
            assert resp.status_code == 401
    # …and a guesser cannot escape its count by prepending addresses of its choosing.
    for fake in ("10.0.0.1", "10.0.0.2"):
        resp = client.get("/status", headers=BAD | {"X-Forwarded-For": f"{fake}, 192.0.2.0"},
                          environ_base=via_nginx)
    assert resp.status_code == 429
    # A client that is not our proxy gets no say in its address at all.
    outside = remote("198.51.100.9")
    for i in range(3):
        client.get("/status", headers=BAD | {"X-Forwarded-For": f"192.0.2.{50 + i}"},
                   environ_base=outside)
    assert client.get("/status", headers=GOOD | {"X-Forwarded-For": "192.0.2.99"},
                      environ_base=outside).status_code == 429
    # the operator behind nginx from another address still gets in
    assert client.get("/status", headers=GOOD | {"X-Forwarded-For": "192.0.2.7"},
                      environ_base=via_nginx).status_code == 200


def test_limiter_memory_is_bounded():
    lim = web.ops.FailureLimiter(max_failures=2, window=60)
    lim.MAX_ADDRESSES = 100
    for i in range(1000):
        lim.failed(f"addr-{i}")
    assert len(lim._failures) == 100
    assert lim.retry_after("addr-999") == 0  # one failure: not blocked
    lim.failed("addr-999")
    assert 59 <= lim.retry_after("addr-999") <= 60
