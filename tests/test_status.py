"""/status (HTML and JSON) over a fleet polled for real, and the rule that no admin surface
(/status, /status.json, /metrics) is ever answered without credentials."""
from __future__ import annotations

import base64
import dataclasses
import re
from datetime import timedelta

import lxml.html
import pytest

from ops_fixtures import NOW, T0, poll_fleet, start_server
from ops_fixtures import feeds_path  # noqa: F401 (fixture)
from web import create_app

TOKEN = "s3cret-token-ملف"  # non-ASCII on purpose: compared as bytes
ADMIN_PATHS = ["/status", "/status.json", "/status?sort=id", "/metrics"]


@pytest.fixture(scope="module")
def server():
    s = start_server()
    yield s
    s.stop()


@pytest.fixture
def polled(server, redis_client, keys, feeds_path):
    # The server's fault queues are consumed per poll: reload them for every test.
    server.feeds["/cnn.xml"].faults[:] = []
    server.feeds["/france24.xml"].faults[:] = []
    from feedserver import Fault

    server.feeds["/cnn.xml"].faults += [Fault(500), Fault(500), Fault(500)]
    server.feeds["/france24.xml"].faults.append(Fault(410))
    return poll_fleet(redis_client, keys, feeds_path)


def make_app(redis_client, keys, feeds_path, **auth):
    cfg = {"TESTING": True, "REDIS_CLIENT": redis_client, "AGG_KEY_PREFIX": keys.prefix,
           "AGG_FEEDS": str(feeds_path), "AGG_NOW": NOW, "AGG_STATUS_TOKEN": "",
           "AGG_STATUS_USER": "", "AGG_STATUS_PASSWORD": ""}
    cfg.update(auth)
    return create_app(cfg)


def basic(user: str, password: str) -> dict:
    raw = f"{user}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


BEARER = {"Authorization": f"Bearer {TOKEN}"}
OUTSIDE = {"REMOTE_ADDR": "203.0.113.9"}


# --- never open ------------------------------------------------------------------------------

def test_admin_surfaces_do_not_exist_without_credentials(redis_client, keys, feeds_path,
                                                         monkeypatch):
    for name in ("AGG_STATUS_TOKEN", "AGG_STATUS_USER", "AGG_STATUS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"TESTING": True, "REDIS_CLIENT": redis_client,
                      "AGG_KEY_PREFIX": keys.prefix, "AGG_FEEDS": str(feeds_path)})
    c = app.test_client()
    for path in ADMIN_PATHS:
        for method in ("GET", "HEAD", "OPTIONS", "POST"):
            resp = c.open(path, method=method, environ_base=OUTSIDE)
            assert resp.status_code in (404, 405), (path, method, resp.status_code)
            assert b"agg_" not in resp.data and b"cnn" not in resp.data
    # Only a user name, or only a password, is not a credential.
    monkeypatch.setenv("AGG_STATUS_USER", "ops")
    assert c.get("/status", headers=basic("ops", "")).status_code == 404


def test_metrics_without_credentials_only_for_a_direct_loopback_scraper(redis_client, keys,
                                                                        feeds_path):
    c = make_app(redis_client, keys, feeds_path).test_client()
    assert c.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    assert c.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert c.get("/metrics", environ_base=OUTSIDE).status_code == 404
    # Through a reverse proxy on the same host the socket is loopback: still refused.
    for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
        resp = c.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"},
                     headers={header: "203.0.113.9"})
        assert resp.status_code == 404, header
    # /status never opens on loopback.
    assert c.get("/status", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 404


def test_token_auth(redis_client, keys, feeds_path, polled):
    # Twelve wrong tries from one address: past the failed-login limit, which has its own
    # tests (test_admin_ratelimit.py); here every answer must come from the credentials.
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN,
                 AGG_ADMIN_MAX_FAILURES=100).test_client()
    for path in ADMIN_PATHS:
        resp = c.get(path, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert resp.status_code == 401, path  # set credentials protect /metrics on loopback too
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert b"cnn" not in resp.data
        assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
        assert c.get(path, headers=basic("x", TOKEN)).status_code == 401
        assert c.get(path, headers=BEARER, environ_base=OUTSIDE).status_code == 200, path
    sep = lambda p: "&" if "?" in p else "?"  # noqa: E731
    from urllib.parse import quote

    for path in ADMIN_PATHS:
        assert c.get(path + sep(path) + "token=" + quote(TOKEN)).status_code == 200, path
        assert c.get(path + sep(path) + "token=nope").status_code == 401


def test_basic_auth(redis_client, keys, feeds_path, polled):
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_USER="ops",
                 AGG_STATUS_PASSWORD="kalimat-sirr").test_client()
    resp = c.get("/status")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert c.get("/status", headers=basic("ops", "wrong")).status_code == 401
    assert c.get("/status", headers=basic("opx", "kalimat-sirr")).status_code == 401
    assert c.get("/status", headers=basic("ops", "kalimat-sirr")).status_code == 200
    assert c.get("/metrics", headers=basic("ops", "kalimat-sirr")).status_code == 200
    assert c.get("/status?token=kalimat-sirr").status_code == 401


def test_credentials_are_compared_in_constant_time(redis_client, keys, feeds_path, monkeypatch):
    import web.ops

    calls = []
    real = web.ops.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(web.ops.hmac, "compare_digest", spy)
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN,
                 AGG_STATUS_USER="ops", AGG_STATUS_PASSWORD="pw").test_client()
    assert c.get("/status.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (b"nope", TOKEN.encode()) in calls
    calls.clear()
    assert c.get("/status.json", headers=basic("wrong", "pw")).status_code == 401
    # Both halves are compared even when the user name is already wrong.
    assert (b"wrong", b"ops") in calls and (b"pw", b"pw") in calls


# --- what it shows ----------------------------------------------------------------------------

def status_json(client, path="/status.json"):
    resp = client.get(path, headers=BEARER)
    assert resp.status_code == 200, resp.data
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.get_json()


def test_status_json_reports_every_source_worst_first(redis_client, keys, feeds_path, polled):
    # a source disabled in feeds.yaml after it was polled keeps a stored next poll
    from aggregator.store import Store
    from aggregator.types import SourceState

    Store(redis_client, keys).save_state("spare", SourceState(
        last_status="ok", polls=3, next_poll=T0 + timedelta(minutes=5)))
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN).test_client()
    data = status_json(c)
    assert data == c.get("/status", headers=BEARER | {"Accept": "application/json"}).get_json()
    rows = {r["id"]: r for r in data["sources"]}
    assert set(rows) == {"bbc", "skynews", "alarabiya", "cnn", "france24", "dead", "spare"}
    assert [r["id"] for r in data["sources"]] == [
        "cnn", "dead", "france24", "alarabiya", "bbc", "skynews", "spare"]
    assert data["sort"] == "worst"

    cnn = rows["cnn"]
    assert cnn["health"] == "failing" and cnn["outcome"] == "http-5xx"
    assert cnn["http_status"] == 500 and cnn["errors"] == 3 and cnn["consecutive_failures"] == 3
    assert cnn["failing_since"] == T0.isoformat() and cnn["failing_for_s"] == 3600
    assert cnn["last_poll"] > T0.isoformat()
    assert cnn["next_poll"] > cnn["last_poll"]
    assert rows["dead"]["outcome"] == "connect" and rows["dead"]["http_status"] is None
    gone = rows["france24"]
    assert gone["health"] == "gone" and gone["outcome"] == "gone"
    assert gone["disabled_reason"].startswith("410 Gone") and gone["next_poll"] is None
    moved = rows["alarabiya"]
    assert moved["health"] == "moved" and moved["suggested_url"].endswith("/alarabia.xml")
    assert moved["items_24h"] == 16
    assert rows["spare"]["enabled"] is False and rows["spare"]["next_poll"] is None
    for sid in ("bbc", "skynews"):
        assert rows[sid]["health"] == "ok" and rows[sid]["http_status"] == 200
        assert rows[sid]["items_total"] == 16 and rows[sid]["latency_ms"] > 0
    # skynews' newest item is 2018-03-12T06:04, more than 12 h before NOW - 24 h? No:
    # NOW - 24 h is 2018-03-11T19:00, so all of its items count; alarabiya has one before.
    assert rows["alarabiya"]["items_total"] == 16
    assert rows["spare"]["health"] == "off" and rows["spare"]["last_poll"] is None
    assert data["summary"] == {"failing": 2, "gone": 1, "moved": 1, "new": 0, "ok": 2, "off": 1}


def test_items_24h_counts_by_published_time(redis_client, keys, feeds_path, polled):
    # alarabiya's items run from 2018-03-11T20:31 to 03-12T10:21; move the clock so the
    # 24 h window starts after its sixth item.
    from feedserver import ant_items

    times = sorted(it["time_utc"] for it in ant_items("alarabia"))
    from datetime import datetime, timedelta

    cut = datetime.fromisoformat(times[6]) - timedelta(seconds=1)
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN,
                 AGG_NOW=cut + timedelta(hours=24)).test_client()
    rows = {r["id"]: r for r in status_json(c)["sources"]}
    assert rows["alarabiya"]["items_24h"] == len(times) - 6
    assert rows["alarabiya"]["items_total"] == len(times)


@pytest.mark.parametrize("sort, first, last", [
    ("id", "alarabiya", "spare"),
    ("-id", "spare", "alarabiya"),
    ("errors", "cnn", None),
    ("items", "cnn", None),
    ("latency", None, None),
    ("bogus", "cnn", "spare"),
])
def test_status_sorts(redis_client, keys, feeds_path, polled, sort, first, last):
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN).test_client()
    data = status_json(c, f"/status.json?sort={sort}")
    ids = [r["id"] for r in data["sources"]]
    if first:
        assert ids[0] == first
    if last:
        assert ids[-1] == last
    if sort == "latency":
        lat = [r["latency_ms"] or 0 for r in data["sources"]]
        assert lat == sorted(lat, reverse=True)
    assert data["sort"] == ("worst" if sort == "bogus" else sort)


def test_status_html_is_arabic_rtl_without_inline_script(redis_client, keys, feeds_path, polled):
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN).test_client()
    resp = c.get("/status?token=" + __import__("urllib.parse").parse.quote(TOKEN))
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    tree = lxml.html.fromstring(resp.get_data(as_text=True))
    html = tree.getroottree().getroot()
    assert html.get("lang") == "ar" and html.get("dir") == "rtl"
    for script in tree.iter("script"):
        assert script.get("src") and not (script.text or "").strip()
    for el in tree.iter():
        assert not any(a.lower().startswith("on") for a in el.attrib), el.tag
    rows = tree.xpath("//tbody/tr")
    assert [r.get("data-source") for r in rows][:3] == ["cnn", "dead", "france24"]
    cnn = " ".join(tree.xpath('//tr[@data-source="cnn"]')[0].text_content().split())
    assert "http-5xx 500" in cnn and "متعثّر" in cnn
    # In Arabic beside the code: what the outcome means, how many failures in a row, since
    # when (one منذ: the relative time carries its own), the response time.
    assert "خطأ في خادم المصدر http-5xx" in cnn and "(٣ مرات متتالية)" in cnn, cnn
    assert re.search("متعثّر (منذ|الآن)", cnn) and "منذ منذ" not in cnn, cnn
    assert "ميلي ثانية" in cnn and " ms" not in cnn, cnn
    gone = " ".join(tree.xpath('//tr[@data-source="france24"]')[0].text_content().split())
    assert "أُزيلت الخلاصة نهائيًا gone 410" in gone, gone
    assert "توقف جلبها بعد ردّ 410 Gone في" in gone and "Gone at" not in gone, gone
    # "CNN بالعربية" starts with a Latin word: right to left all the same, like its badges
    assert tree.xpath('//tr[@data-source="cnn"]/th/bdi')[0].get("dir") == "rtl"
    moved = tree.xpath('//tr[@data-source="alarabiya"]')[0]
    assert moved.xpath('.//a[contains(@href, "/alarabia.xml") and not(contains(@href, "redirect"))]')
    # Sort links keep the token the page was opened with.
    links = tree.xpath('//a[contains(@href, "sort=")]/@href')
    assert links and all("token=" in h for h in links)


def test_status_tells_a_servers_wait_only_while_it_lasts(redis_client, keys, feeds_path,
                                                       polled):
    from datetime import timedelta

    from aggregator.store import Store
    from ops_fixtures import NOW

    store = Store(redis_client, keys)
    for sid, until in (("bbc", NOW + timedelta(minutes=20)),
                       ("alarabiya", NOW - timedelta(minutes=5))):
        store.save_state(sid, dataclasses.replace(store.load_state(sid), retry_after_until=until))
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN).test_client()
    tree = lxml.html.fromstring(c.get("/status", headers=BEARER).get_data(as_text=True))
    waits = {row.get("data-source") for row in tree.xpath("//tr[@data-source]")
             if "طلب الخادم الانتظار" in row.text_content()}
    assert waits == {"bbc"}  # alarabiya's wait is over: its next poll is the backoff's
    # the JSON keeps the stored value either way
    rows = {r["id"]: r for r in c.get("/status.json", headers=BEARER).get_json()["sources"]}
    assert rows["alarabiya"]["retry_after_until"] and rows["bbc"]["retry_after_until"]


def test_status_html_with_basic_auth_has_no_token_in_links(redis_client, keys, feeds_path,
                                                            polled):
    c = make_app(redis_client, keys, feeds_path, AGG_STATUS_USER="ops",
                 AGG_STATUS_PASSWORD="pw").test_client()
    resp = c.get("/status?sort=-items", headers=basic("ops", "pw"))
    assert resp.status_code == 200
    tree = lxml.html.fromstring(resp.get_data(as_text=True))
    links = tree.xpath('//a[contains(@href, "sort=")]/@href')
    assert links and not any("token" in h for h in links)
    # Sorting by a column twice flips it.
    assert "/status?sort=items" in links


def test_status_says_a_feeds_edit_was_rejected_and_the_last_good_config_runs(
        redis_client, keys, feeds_path, polled):
    app = make_app(redis_client, keys, feeds_path, AGG_STATUS_TOKEN=TOKEN)
    c = app.test_client()
    assert c.get("/status.json", headers=BEARER).get_json()["config"] == {
        "path": str(feeds_path), "valid": True, "problems": [], "rejected_since": None}
    good = feeds_path.read_text(encoding="utf-8")
    feeds_path.write_text(good.replace("    title:", "    titel:", 1), encoding="utf-8")
    app.extensions["aggregator"]._config_checked = 0.0  # the next request checks the file
    body = c.get("/status.json", headers=BEARER).get_json()
    problem = body["config"]["problems"][-1]
    assert body["config"]["valid"] is False and re.match(
        re.escape(str(feeds_path)) + r":7: sources\[0\]\.titel: unknown key 'titel'", problem)
    assert [r["id"] for r in body["sources"]]  # the last good config's sources still listed
    tree = lxml.html.fromstring(c.get("/status", headers=BEARER).get_data(as_text=True))
    alert = " ".join(tree.xpath('//*[@role="alert"]')[0].text_content().split())
    assert "رُفض تعديل" in alert and "يعمل آخر إعداد صالح" in alert and problem in alert

    feeds_path.write_text(good, encoding="utf-8")
    app.extensions["aggregator"]._config_checked = 0.0
    assert c.get("/status.json", headers=BEARER).get_json()["config"]["valid"] is True
    assert not lxml.html.fromstring(c.get("/status", headers=BEARER).get_data(as_text=True)
                                    ).xpath('//*[@role="alert"]')


@pytest.mark.parametrize("seconds, words", [
    (0.3, "الآن"), (1.2, "قبل ثانية"), (2, "قبل ثانيتين"), (3, "قبل ٣ ثوانٍ"),
    (10.4, "قبل ١٠ ثوانٍ"), (11, "قبل ١١ ثانية"), (100, "قبل ١٠٠ ثانية"),
])
def test_heartbeat_age_is_said_with_the_arabic_count_forms(redis_client, keys, feeds_path,
                                                           seconds, words):
    app = make_app(redis_client, keys, feeds_path)
    with app.test_request_context("/status"):
        assert app.jinja_env.filters["seconds_ago"](seconds) == words
