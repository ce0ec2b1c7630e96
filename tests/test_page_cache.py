"""The page cache (web/pagecache.py) over a real Redis and the real ANT items: one render per
page per store version, single flight, stale bytes while a re-render is in flight,
per-reader pages never shared, and the same headers as a fresh render. Renders are counted
with Flask's own template signals."""
from __future__ import annotations

import gzip
import threading
import time
import urllib.request
from contextlib import contextmanager
from datetime import timedelta

import pytest
from flask import before_render_template, template_rendered
from werkzeug.serving import make_server

from web import create_app
from web.extensions import services

from httptest import serving, wait_until
from pages_fixtures import FEEDS_YAML, NOW, GoldGrouper, item_id, load_rows, make_item
from pages_fixtures import config, feeds_path, store  # noqa: F401 (fixtures)

ROWS = load_rows()


@pytest.fixture
def app(redis_client, keys, feeds_path, config, store):
    app = create_app({
        "TESTING": True, "REDIS_CLIENT": redis_client, "AGG_KEY_PREFIX": keys.prefix,
        "AGG_FEEDS": str(feeds_path), "AGG_NOW": NOW, "AGG_TIMEZONE": "Asia/Riyadh",
        # exact freshness: read the version on every request, and no re-render floor
        # (test_a_busy_store_re_renders_a_page_at_most_once_per_min_refresh has one)
        "AGG_VERSION_TTL": 0, "AGG_PAGE_MIN_REFRESH": 0,
        "AGG_STATUS_TOKEN": "tok",
    })
    with app.app_context():
        services()._grouper = GoldGrouper(ROWS, {s.id: s.rank for s in config.sources})
    return app


@contextmanager
def renders(app):
    """Names of the templates the app renders meanwhile (Flask's template_rendered)."""
    seen: list[str] = []

    def record(sender, template, context, **extra):
        seen.append(template.name)

    template_rendered.connect(record, app)
    try:
        yield seen
    finally:
        template_rendered.disconnect(record, app)


def new_item(store, config, ident: str, title: str):
    """Store one new item the way a poll does (bumps the outputs version)."""
    src = next(s for s in config.sources if s.id == "bbc_arabic")
    base = make_item(ROWS[0])
    item = base.__class__(**{**base.__dict__, "id": ident, "title": title, "source": src.id,
                             "published": NOW - timedelta(minutes=1)})
    before = store.outputs_version()
    store.save_poll(src, [item], store.load_state(src.id), NOW)
    assert store.outputs_version() > before


def test_second_request_is_served_without_rendering(app):
    c = app.test_client()
    with renders(app) as seen:
        first = c.get("/")
        second = c.get("/")
        # arguments the view does not read, and defaults written out, share the entry
        third = c.get("/?utm_source=x&limit=30")
    assert first.status_code == second.status_code == third.status_code == 200
    assert seen.count("index.html") == 1
    assert first.data == second.data == third.data
    with renders(app) as seen:
        for path in ("/stories/hamdallah-convoy-bombing-gaza", "/topics/skripal-poisoning",
                     "/sources", "/embed/all?limit=5"):
            a, b = c.get(path), c.get(path)
            assert a.status_code == b.status_code == 200 and a.data == b.data, path
    assert sorted(seen) == ["embed.html", "sources.html", "story.html", "topic.html"]


def test_an_item_ids_redirect_to_its_story_is_cached_too(app, store, config):
    from web.pagecache import page_cache

    iid = item_id(next(r for r in ROWS if r["story"] == "hamdallah-convoy-bombing-gaza"))
    c = app.test_client()
    cache = page_cache(app)
    answers = [c.get(f"/stories/{iid}") for _ in range(3)]
    assert {(r.status_code, r.headers["Location"]) for r in answers} == {
        (301, "/stories/hamdallah-convoy-bombing-gaza")}
    assert cache.renders == 1
    new_item(store, config, "fresh-4", "خبر آخر")
    assert c.get(f"/stories/{iid}").status_code == 301
    assert cache.renders == 2


def test_different_arguments_are_different_pages(app):
    c = app.test_client()
    with renders(app) as seen:
        everything = c.get("/").data
        bbc = c.get("/?source=bbc_arabic").data
        c.get("/?source=bbc_arabic")
        five = c.get("/embed/all?limit=5").data
        six = c.get("/embed/all?limit=6").data
    assert seen.count("index.html") == 2 and seen.count("embed.html") == 2
    assert everything != bbc and five != six


def test_searches_are_never_cached(app):
    c = app.test_client()
    with renders(app) as seen:
        a = c.get("/?q=سكريبال")
        b = c.get("/?q=سكريبال")
        other = c.get("/?q=نيبال")
    assert seen.count("index.html") == 3
    assert a.data == b.data and a.data != other.data
    assert "ETag" not in a.headers


def test_a_poll_that_bumps_the_version_shows_on_the_next_request(app, store, config):
    c = app.test_client()
    c.get("/")
    c.get("/?source=bbc_arabic")
    new_item(store, config, "fresh-1", "خبر جديد للتو عن الكاش")
    with renders(app) as seen:
        assert "خبر جديد للتو عن الكاش" in c.get("/").get_data(as_text=True)
        assert "خبر جديد للتو عن الكاش" in c.get("/?source=bbc_arabic").get_data(as_text=True)
        c.get("/")
    assert seen.count("index.html") == 2


def test_a_busy_store_re_renders_a_page_at_most_once_per_min_refresh(app, store, config):
    app.config["AGG_PAGE_MIN_REFRESH"] = 0.5
    c = app.test_client()
    with renders(app) as seen:
        old = c.get("/").data
        new_item(store, config, "fresh-3", "خبر يصل والصفحة ما زالت حديثة")
        assert c.get("/").data == old  # rendered under 0.5 s ago: served as it is
        time.sleep(0.55)
        assert "خبر يصل والصفحة ما زالت حديثة" in c.get("/").get_data(as_text=True)
        c.get("/")
    assert seen.count("index.html") == 2


def test_pages_expire_after_max_age_and_follow_feeds_yaml(app, feeds_path):
    app.config["AGG_PAGE_MAX_AGE"] = 0.3
    c = app.test_client()
    with renders(app) as seen:
        c.get("/")
        c.get("/")
        time.sleep(0.35)  # relative times ("منذ ٥ دقائق") must not outlive a page by much
        c.get("/")
    assert seen.count("index.html") == 2
    app.config["AGG_PAGE_MAX_AGE"] = 3600
    c.get("/sources")
    # An outlet renamed in feeds.yaml: no store change, but the next pages name it anew.
    feeds_path.write_text(FEEDS_YAML.replace("title: فرانس 24", "title: فرانس ٢٤ الجديدة"),
                          encoding="utf-8")
    assert wait_until(lambda: "فرانس ٢٤ الجديدة" in c.get("/").get_data(as_text=True),
                      timeout=5)


def test_conditional_get_and_gzip(app):
    c = app.test_client()
    first = c.get("/")
    etag = first.headers["ETag"]
    assert first.headers["Vary"] == "Accept-Encoding"
    with renders(app) as seen:
        resp = c.get("/", headers={"If-None-Match": etag})
    assert resp.status_code == 304 and resp.data == b"" and seen == []
    assert resp.headers["ETag"] == etag
    assert c.get("/", headers={"If-None-Match": '"other"'}).status_code == 200
    gz = c.get("/", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip" and gz.headers["ETag"] != etag
    assert gzip.decompress(gz.data) == first.data
    assert c.get("/", headers={"If-None-Match": gz.headers["ETag"]}).status_code == 304


SECURITY = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
            "Referrer-Policy", "Content-Type")


def test_cached_responses_keep_the_security_headers(app):
    c = app.test_client()
    for path in ("/", "/stories/hamdallah-convoy-bombing-gaza", "/sources", "/embed/all"):
        fresh, cached = c.get(path), c.get(path)
        assert fresh.data == cached.data
        for h in SECURITY:
            assert fresh.headers.get(h) == cached.headers.get(h), (path, h)
    embed = c.get("/embed/all")
    assert "frame-ancestors *" in embed.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in embed.headers
    assert c.get("/").headers["X-Frame-Options"] == "DENY"


def test_admin_and_error_pages_are_not_cached(app):
    c = app.test_client()
    with renders(app) as seen:
        for _ in range(2):
            resp = c.get("/status", headers={"Authorization": "Bearer tok"})
            assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
            assert c.get("/stories/no-such-story").status_code == 404
        assert c.get("/status").status_code == 401  # a cached admin page would leak here
    assert seen.count("status.html") == 2 and seen.count("error.html") == 2


@contextmanager
def http(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


def fetch(url: str) -> tuple[float, bytes]:
    t = time.monotonic()
    with urllib.request.urlopen(url, timeout=20) as r:
        return time.monotonic() - t, r.read()


def test_concurrent_cold_requests_render_once(app):
    def slow(sender, template, context, **extra):
        time.sleep(0.3)  # a render long enough for every request to arrive during it

    before_render_template.connect(slow, app)
    results: list[bytes] = []
    try:
        with renders(app) as seen, http(app) as base:
            threads = [threading.Thread(target=lambda: results.append(fetch(base + "/")[1]))
                       for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
    finally:
        before_render_template.disconnect(slow, app)
    assert len(results) == 8 and len(set(results)) == 1
    assert seen.count("index.html") == 1


def test_stale_bytes_are_served_while_one_request_re_renders(app, store, config):
    release = threading.Event()
    rendering = threading.Event()

    def hold(sender, template, context, **extra):
        if template.name == "index.html":
            rendering.set()
            assert release.wait(20)

    with http(app) as base:
        _, old = fetch(base + "/")
        new_item(store, config, "fresh-2", "خبر أحدث من الصفحة المحفوظة")
        before_render_template.connect(hold, app)
        try:
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("renderer", fetch(base + "/")))
            t.start()
            assert rendering.wait(10)
            took, body = fetch(base + "/")  # the re-render is held: this one must not wait
            assert body == old and took < 2
            release.set()
            t.join(20)
        finally:
            before_render_template.disconnect(hold, app)
        assert "خبر أحدث من الصفحة المحفوظة" in out["renderer"][1].decode()
        assert fetch(base + "/")[1] == out["renderer"][1]
