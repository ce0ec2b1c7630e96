"""/feeds/… over real HTTP on 127.0.0.1, items stored in the real Redis via Store.save_poll:
content types, validators and 304, gzip, CORS, Link, paging, search, freshness."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import json
import os
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from lxml import etree

from aggregator.store import Store
from aggregator.types import Item, SourceState
from syndicate_ant import SOURCES, GoldGrouper, LiveServer, gold_stories, load_rows, make_app, save_all

A = "{http://www.w3.org/2005/Atom}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
UTC = timezone.utc


def get(url: str, headers: dict | None = None, method: str = "GET"):
    """Raw HTTP: no client-side decompression or header defaults to hide anything."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(method, u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, hdrs, body


@pytest.fixture
def rows():
    return load_rows()


@pytest.fixture
def live(redis_client, keys, rows):
    stories, topics = gold_stories(rows)
    save_all(Store(redis_client, keys), rows)
    app = make_app(redis_client, keys, GoldGrouper(stories, topics),
                   AGG_VERSION_TTL=0.0)
    server = LiveServer(app)
    server.rows, server.stories, server.topics = rows, stories, topics
    server.store = Store(redis_client, keys)
    yield server
    server.close()


CT = {"rss": "application/rss+xml; charset=utf-8",
      "atom": "application/atom+xml; charset=utf-8",
      "json": "application/feed+json; charset=utf-8"}


@pytest.mark.parametrize("path", [
    "/feeds/all", "/feeds/sources/alarabiya", "/feeds/tags/gulf", "/feeds/countries/FR",
    "/feeds/stories/hamdallah-convoy-bombing-gaza", "/feeds/topics/skripal-poisoning",
])
@pytest.mark.parametrize("fmt", ["rss", "atom", "json"])
def test_every_output_answers_with_type_cors_link_and_validators(live, path, fmt):
    status, h, body = get(f"{live.url}{path}.{fmt}")
    assert status == 200, body[:300]
    assert h["content-type"] == CT[fmt]
    assert h["access-control-allow-origin"] == "*"
    assert h["link"] == f'<{live.url}{path}.{fmt}>; rel="self"'
    assert h["etag"] == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'  # strong, of the bytes
    parsedate_to_datetime(h["last-modified"])
    assert "max-age=60" in h["cache-control"] and "stale-while-revalidate" in h["cache-control"]
    assert h["vary"] == "Accept-Encoding"
    if fmt == "json":
        doc = json.loads(body)
        assert doc["language"] == "ar" and doc["items"]
    else:
        root = etree.fromstring(body)  # well-formed
        if fmt == "atom":
            rng = etree.RelaxNG(etree.parse(os.path.join(
                os.path.dirname(__file__), "data", "atom-rfc4287.rng")))
            assert rng.validate(root), rng.error_log.last_error  # RFC 4287 Appendix B
            assert root.get(XML_LANG) == "ar"
            entries = root.findall(A + "entry")
            assert entries and all(e.get(XML_LANG) == "ar" for e in entries)
        else:
            assert root.findtext("channel/language") == "ar"
            assert root.findall("channel/item")


def test_modes_default_per_kind(live):
    def ids(path):
        return [i["id"].split(":", 2)[2].split("/")[0] for i in
                json.loads(get(f"{live.url}{path}")[2])["items"]]
    assert set(ids("/feeds/all.json")) == {"story"}
    assert set(ids("/feeds/sources/bbc.json")) == {"item"}
    assert set(ids("/feeds/tags/news.json")) == {"story"}
    assert set(ids("/feeds/countries/GB.json")) == {"story"}
    assert set(ids("/feeds/stories/hamdallah-convoy-bombing-gaza.json")) == {"item"}
    assert set(ids("/feeds/topics/skripal-poisoning.json")) == {"story"}
    assert set(ids("/feeds/all.json?mode=articles")) == {"item"}
    assert set(ids("/feeds/sources/bbc.json?mode=stories")) == {"story"}


def test_story_feed_follows_its_reports(live):
    s = live.stories["hamdallah-convoy-bombing-gaza"]
    doc = json.loads(get(f"{live.url}/feeds/stories/{s.id}.json")[2])
    assert {i["id"].rsplit("/", 1)[1] for i in doc["items"]} == set(s.items)
    dates = [i["date_published"] for i in doc["items"]]
    assert dates == sorted(dates, reverse=True)


def test_story_feed_lists_an_article_under_http_and_https_once(redis_client, keys, rows):
    # CNN Arabic lists some articles under both schemes (158 items in ANT): two items.
    stories, topics = gold_stories(rows)
    s = stories["hamdallah-convoy-bombing-gaza"]
    member = next(r.item for r in rows if r.item.id == s.items[-1])
    again = dataclasses.replace(member, id="again", guid="again",
                                url=member.url.replace("https://", "http://", 1)
                                if member.url.startswith("https://")
                                else member.url.replace("http://", "https://", 1))
    save_all(Store(redis_client, keys), rows)
    Store(redis_client, keys).save_poll(SOURCES[member.source], [again], SourceState(),
                                        datetime(2018, 3, 14, tzinfo=timezone.utc))
    stories[s.id] = dataclasses.replace(s, items=(*s.items, "again"))
    server = LiveServer(make_app(redis_client, keys, GoldGrouper(stories, topics),
                                 AGG_VERSION_TTL=0.0))
    try:
        doc = json.loads(get(f"{server.url}/feeds/stories/{s.id}.json")[2])
        # its topic's article feed lists the article once too, and so does the whole site's
        topic = json.loads(get(f"{server.url}/feeds/topics/{s.topic}.json?mode=articles")[2])
        every = json.loads(get(f"{server.url}/feeds/all.json?mode=articles&limit=200")[2])
    finally:
        server.close()
    every_ids = [i["id"].rsplit("/", 1)[1] for i in every["items"]]
    assert len({member.id, "again"} & set(every_ids)) == 1, "the article is listed twice"
    assert {i["id"].rsplit("/", 1)[1] for i in doc["items"]} == set(s.items)
    topic_ids = {i["id"].rsplit("/", 1)[1] for i in topic["items"]}
    assert set(s.items) <= topic_ids and "again" not in topic_ids


def test_filtered_stories_are_those_with_a_member_in_the_index(live):
    doc = json.loads(get(f"{live.url}/feeds/countries/GB.json?limit=200")[2])
    got = {i["_aggregator"]["story_id"] for i in doc["items"]}
    expected = {r.story for r in live.rows if r.item.source == "bbc"}
    assert got == expected


# --- conditional requests --------------------------------------------------------------

def test_304_on_if_none_match_and_if_modified_since(live):
    url = f"{live.url}/feeds/all.atom"
    status, h, body = get(url)
    assert status == 200
    s2, h2, b2 = get(url, {"If-None-Match": h["etag"]})
    assert (s2, b2) == (304, b"")
    assert h2["etag"] == h["etag"] and h2["access-control-allow-origin"] == "*"
    assert get(url, {"If-None-Match": '"nope", ' + h["etag"]})[0] == 304
    assert get(url, {"If-None-Match": "W/" + h["etag"]})[0] == 304  # weak comparison
    assert get(url, {"If-None-Match": '"other"'})[0] == 200
    assert get(url, {"If-Modified-Since": h["last-modified"]})[0] == 304
    earlier = format_datetime(parsedate_to_datetime(h["last-modified"]) - timedelta(seconds=1),
                              usegmt=True)
    assert get(url, {"If-Modified-Since": earlier})[0] == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
    assert get(url, {"If-None-Match": '"other"', "If-Modified-Since": h["last-modified"]})[0] == 200


def test_new_item_changes_etag_and_shows_within_a_second(live, redis_client, keys):
    # The production setting: each process trusts its read of the version for 0.2 s.
    app = make_app(redis_client, keys, GoldGrouper(live.stories, live.topics))
    assert "AGG_VERSION_TTL" not in app.config
    server = LiveServer(app)
    try:
        _new_item_shows_within_a_second(live, server.url)
    finally:
        server.close()


def _new_item_shows_within_a_second(live, base):
    url = f"{base}/feeds/sources/bbc.rss"
    _, h, _ = get(url)
    assert get(url, {"If-None-Match": h["etag"]})[0] == 304  # cached, hot
    now = datetime.now(UTC).replace(microsecond=0)
    new = Item(id="freshitem0001", source="bbc", url="https://www.bbc.com/arabic/live-1",
               guid="live-1", title="خبر عاجل: اختبار الظهور خلال ثانية", summary_html="",
               summary_text="", published=now, first_seen=now, updated=now,
               content_hash="x1")
    live.store.save_poll(SOURCES["bbc"], [new], SourceState(last_poll=now), now)
    t0 = time.monotonic()
    while True:
        status, h2, body = get(url, {"If-None-Match": h["etag"]})
        if status == 200:
            break
        assert time.monotonic() - t0 < 1.0, "new item not in the output within a second"
        time.sleep(0.05)
    assert "خبر عاجل: اختبار الظهور خلال ثانية" in body.decode("utf-8")
    assert h2["etag"] != h["etag"]
    assert parsedate_to_datetime(h2["last-modified"]) > parsedate_to_datetime(h["last-modified"])


def test_cors_preflight(live):
    status, h, _ = get(f"{live.url}/feeds/all.json", {
        "Origin": "https://example.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match"}, method="OPTIONS")
    assert status == 200 and h["access-control-allow-origin"] == "*"
    allowed = {x.strip().lower() for x in h["access-control-allow-headers"].split(",")}
    assert {"if-none-match", "if-modified-since", "cache-control"} <= allowed
    assert "GET" in h["access-control-allow-methods"]


def test_output_cache_is_bounded_in_bytes():
    from web.cache import OutputCache, Rendered

    cache = OutputCache(max_entries=100, max_bytes=3000)
    for i in range(10):
        cache.put((f"/feeds/{i}", ""), Rendered.build(b"x" * 1000, "text/plain",
                                                     datetime.now(UTC), "u", 1))
    assert cache._bytes <= 3000 and len(cache._data) >= 1
    assert cache.get(("/feeds/9", ""), 1) is not None  # newest kept
    assert cache.get(("/feeds/0", ""), 1) is None  # oldest evicted


def test_head_has_headers_and_no_body(live):
    status, h, body = get(f"{live.url}/feeds/all.rss")
    s2, h2, b2 = get(f"{live.url}/feeds/all.rss", method="HEAD")
    assert s2 == 200 and b2 == b""
    assert h2["etag"] == h["etag"] and int(h2["content-length"]) == len(body)


# --- gzip -------------------------------------------------------------------------------

def test_gzip_is_negotiated_with_its_own_etag(live):
    url = f"{live.url}/feeds/all.json"
    _, plain_h, plain = get(url)
    assert "content-encoding" not in plain_h
    status, h, body = get(url, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and h["content-encoding"] == "gzip"
    assert gzip.decompress(body) == plain
    assert len(body) < len(plain) / 2
    assert h["etag"] != plain_h["etag"] and h["vary"] == "Accept-Encoding"
    assert int(h["content-length"]) == len(body)
    assert get(url, {"Accept-Encoding": "gzip;q=0"})[1].get("content-encoding") is None
    assert get(url, {"Accept-Encoding": "gzip", "If-None-Match": h["etag"]})[0] == 304


# --- fast path and cache ----------------------------------------------------------------

@pytest.mark.parametrize("header, gzip", [
    (None, False), ("", False), ("gzip", True), ("x-gzip", True), ("GZIP", True),
    ("gzip;q=0", False), ("gzip;Q=0", False), ("gzip; q=0.0", False), ("gzip;q=0.5", True),
    ("*", True), ("*;q=0", False), ("*;q=0, gzip", True), ("gzip;q=0, *", False),
    ("deflate, br", False), ("br, *;q=0.1", True), ("identity", False),
])
def test_accept_encoding_is_read_as_rfc_9110_says(header, gzip):
    from web.cache import accepts_gzip

    assert accepts_gzip(header) is gzip


def test_repeat_requests_carry_the_same_security_headers(live):
    # the first request renders in Flask; repeats and 304s come from the fast path
    url = f"{live.url}/feeds/all.atom?limit=3"
    first = get(url)[1]
    again = get(url)[1]
    not_modified = get(url, {"If-None-Match": first["etag"]})
    assert not_modified[0] == 304
    for name in ("content-security-policy", "x-frame-options", "referrer-policy",
                 "x-content-type-options"):
        assert first[name] == again[name] == not_modified[1][name], name


def test_hot_request_renders_nothing(live, monkeypatch):
    from aggregator import syndicate

    url = f"{live.url}/feeds/all.atom?limit=10"
    first = get(url)[2]
    calls = []
    real = syndicate.render
    monkeypatch.setattr(syndicate, "render", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(5):
        assert get(url)[2] == first
    assert calls == []


# --- parameters, paging, search ---------------------------------------------------------

def walk(live, url):
    seen, pages = [], 0
    while url:
        status, h, body = get(url)
        assert status == 200, body[:200]
        doc = json.loads(body)
        seen += [i["id"] for i in doc["items"]]
        url = doc.get("next_url")
        if url:
            url = url.replace("http://localhost/", live.url + "/")
        pages += 1
        assert pages < 50
    return seen, pages


@pytest.mark.parametrize("path,total", [
    ("/feeds/all.json?mode=articles&limit=4", None),
    ("/feeds/all.json?limit=4", "stories"),
    ("/feeds/tags/gulf.json?mode=stories&limit=2", "gulf-stories"),
    ("/feeds/sources/bbc.json?mode=stories&limit=1", "bbc-stories"),
    ("/feeds/sources/france24.json?limit=2", "france24"),
    # the cursor is a report's place: a story's older reports follow on the next page
    ("/feeds/topics/skripal-poisoning.json?mode=articles&limit=2", "skripal-poisoning"),
])
def test_paging_cursor_round_trip(live, path, total):
    ids, pages = walk(live, live.url + path)
    assert len(ids) == len(set(ids)), "an entry repeated across pages"
    if total is None:
        expected = {r.item.id for r in live.rows}
        got = {i.rsplit("/", 1)[1] for i in ids}
    elif total == "stories":
        expected, got = set(live.stories), {i.rsplit("/", 1)[1] for i in ids}
    elif total == "gulf-stories":
        expected = {r.story for r in live.rows if "gulf" in SOURCES[r.item.source].tags}
        got = {i.rsplit("/", 1)[1] for i in ids}
    elif total == "bbc-stories":
        expected = {r.story for r in live.rows if r.item.source == "bbc"}
        got = {i.rsplit("/", 1)[1] for i in ids}
    elif total == "skripal-poisoning":
        expected = {i for st in live.stories.values() if st.topic == total for i in st.items}
        got = {i.rsplit("/", 1)[1] for i in ids}
    else:
        expected = {r.item.id for r in live.rows if r.item.source == total}
        got = {i.rsplit("/", 1)[1] for i in ids}
    assert got == expected and pages > 1


def test_a_source_story_feed_reads_its_stories_in_batches(redis_client, keys, rows):
    """Each scanned item cost three round trips (its story, the story, its members' places
    in the index); now a batch of items costs three together."""
    from aggregator import group
    from roundtrips import CountingRedis

    save_all(Store(redis_client, keys), rows)
    client = CountingRedis(connection_pool=redis_client.connection_pool)
    g = group.Grouper(client, keys)
    g.process_pending(datetime(2018, 3, 14, tzinfo=UTC))
    c = make_app(client, keys, g, AGG_VERSION_TTL=0.0).test_client()
    c.get("/feeds/all.json?mode=articles&limit=1")  # first request: config, version
    before = CountingRedis.trips
    doc = c.get("/feeds/sources/bbc.json?mode=stories&limit=30").get_json()
    trips = CountingRedis.trips - before
    bbc = {r.item.id for r in rows if r.item.source == "bbc"}
    assert len(doc["items"]) == len(set(g.stories_of(sorted(bbc)))) >= 5
    assert trips <= 12, trips  # 10 now; 25 with three round trips per item


def test_paging_links_in_atom_and_rss(live):
    status, _, body = get(f"{live.url}/feeds/all.atom?mode=articles&limit=5")
    root = etree.fromstring(body)
    links = {ln.get("rel"): ln.get("href") for ln in root.findall(A + "link")}
    assert links["self"] == f"{live.url}/feeds/all.atom?limit=5&mode=articles"
    nxt = urlsplit(links["next"])
    q = parse_qs(nxt.query)
    assert q["limit"] == ["5"] and q["mode"] == ["articles"] and q["before"]
    page2 = etree.fromstring(get(links["next"])[2])
    p2links = {ln.get("rel"): ln.get("href") for ln in page2.findall(A + "link")}
    assert p2links["first"] == links["self"]
    ids1 = [e.findtext(A + "id") for e in root.findall(A + "entry")]
    ids2 = [e.findtext(A + "id") for e in page2.findall(A + "entry")]
    assert len(ids1) == 5 and ids2 and not set(ids1) & set(ids2)
    rss = etree.fromstring(get(f"{live.url}/feeds/all.rss?limit=3")[2])
    rels = {ln.get("rel") for ln in rss.findall("channel/" + A + "link")}
    assert rels == {"self", "next"}


def test_limit_bounds_and_bad_params(live):
    doc = json.loads(get(f"{live.url}/feeds/all.json?mode=articles")[2])
    assert len(doc["items"]) == min(50, len(live.rows))
    assert len(json.loads(get(f"{live.url}/feeds/all.json?mode=articles&limit=200")[2])["items"]) \
        == len(live.rows)
    for bad in ("limit=0", "limit=201", "limit=x", "mode=x", "before=abc", "before=inf",
                "limit=%2B5", "limit=5_0", "limit=%D9%A5",  # +5, 5_0, Arabic-Indic 5
                "q=...", "q=%C2%AB%C2%BB"):  # no words to search for
        status, h, body = get(f"{live.url}/feeds/all.json?{bad}")
        assert status == 400, bad
        assert h["access-control-allow-origin"] == "*"
        # a feed's client is a program: the reason in the output's own terms, not HTML
        assert h["content-type"].startswith("application/json") and json.loads(body)["error"]
    status, h, body = get(f"{live.url}/feeds/all.rss?limit=201")
    assert (status, h["content-type"].split(";")[0], body) == (400, "text/plain", b"limit must be 1..200\n")
    assert get(f"{live.url}/feeds/sources/nosuch.rss")[0] == 404
    assert get(f"{live.url}/feeds/all.xml")[0] == 404
    assert get(f"{live.url}/feeds/stories/nosuch.atom")[0] == 404
    assert get(f"{live.url}/feeds/topics/nosuch.atom")[0] == 404
    # only a code's case is redirected: 'ß'.upper() is 'SS', 'ﬀ'.upper() is 'FF'
    assert get(f"{live.url}/feeds/countries/%C3%9F.rss")[0] == 404
    assert get(f"{live.url}/feeds/countries/%EF%AC%80.rss")[0] == 404
    assert get(f"{live.url}/feeds/countries/gb.rss")[0] == 301


def test_a_search_ends_on_its_last_match_not_on_an_empty_page(live):
    q = quote("غزة")
    matches = len(json.loads(get(f"{live.url}/feeds/all.json?mode=articles&q={q}&limit=200")[2])
                  ["items"])
    assert matches >= 2
    doc = json.loads(get(f"{live.url}/feeds/all.json?mode=articles&q={q}&limit={matches}")[2])
    assert len(doc["items"]) == matches and "next_url" not in doc
    doc = json.loads(get(f"{live.url}/feeds/all.json?mode=articles&q={q}&limit={matches - 1}")[2])
    assert doc["next_url"]


def test_a_story_feed_in_stories_mode_honours_q_and_before(live):
    s = live.stories["hamdallah-convoy-bombing-gaza"]
    url = f"{live.url}/feeds/stories/{s.id}.json?mode=stories"
    assert len(json.loads(get(url)[2])["items"]) == 1
    assert len(json.loads(get(url + "&q=" + quote("موكب"))[2])["items"]) == 1
    assert json.loads(get(url + "&q=zzzzqq")[2])["items"] == []
    assert json.loads(get(url + "&before=1")[2])["items"] == []


def test_search_normalises_arabic(live):
    # Stored titles write "اغتيال" (bare alef); the query uses hamza-alef and diacritics.
    q = quote("إغْتيال")
    doc = json.loads(get(f"{live.url}/feeds/all.json?mode=articles&q={q}&limit=200")[2])
    titles = [i["title"] for i in doc["items"]]
    expected = [r.item.title for r in live.rows if "اغتيال" in r.item.title]
    assert expected and sorted(titles) == sorted(expected)
    stories = json.loads(get(f"{live.url}/feeds/all.json?q={q}")[2])["items"]
    assert {i["_aggregator"]["story_id"] for i in stories} == \
        {r.story for r in live.rows if "اغتيال" in r.item.title}
    assert "بحث" in json.loads(get(f"{live.url}/feeds/all.json?q={q}")[2])["title"]


# --- pre-rendered files and the documented nginx front ------------------------------------

def test_prerender_writes_the_served_bytes_and_watch_keeps_them_current(live, tmp_path):
    import threading

    from web.cache import prerender, watch

    live.app.config["AGG_PUBLIC_URL"] = live.url + "/"
    paths = ["/feeds/all.atom", "/feeds/sources/bbc.rss", "/feeds/sources/nosuch.json"]
    result = prerender(live.app, str(tmp_path), paths)
    assert result == {paths[0]: 200, paths[1]: 200, paths[2]: 404}
    status, h, body = get(live.url + "/feeds/sources/bbc.rss")
    f = tmp_path / "feeds" / "sources" / "bbc.rss"
    assert f.read_bytes() == body
    assert gzip.decompress((tmp_path / "feeds" / "sources" / "bbc.rss.gz").read_bytes()) == body
    assert f.stat().st_mtime == parsedate_to_datetime(h["last-modified"]).timestamp()
    assert not (tmp_path / "feeds" / "sources" / "nosuch.json").exists()

    stop = threading.Event()
    t = threading.Thread(target=watch, args=(live.app, str(tmp_path), 0.05, stop, paths[:2]),
                         daemon=True)
    t.start()
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        new = Item(id="prerender001", source="bbc", url="https://www.bbc.com/arabic/pr-1",
                   guid="pr-1", title="عاجل: ملف محدث", summary_html="", summary_text="",
                   published=now, first_seen=now, updated=now, content_hash="p1")
        live.store.save_poll(SOURCES["bbc"], [new], SourceState(last_poll=now), now)
        t0 = time.monotonic()
        while "عاجل: ملف محدث" not in f.read_text(encoding="utf-8"):
            assert time.monotonic() - t0 < 1.0, "file not refreshed within a second"
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(5)


def test_documented_nginx_front_serves_files_like_the_app(live):
    import os
    import shutil
    import signal
    import subprocess
    import tempfile

    from bench.serve import free_port, nginx_config
    from web.cache import prerender

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(nginx), "nginx is not installed (.ci/run installs it)"
    tmp = tempfile.mkdtemp(prefix="agg-nginx-")
    os.chmod(tmp, 0o755)  # workers run as nobody when started by root
    port_prod = free_port()
    public = os.path.join(tmp, "public")
    # the public name differs from the address asked: a TLS front, or any Host header
    live.app.config["AGG_PUBLIC_URL"] = "https://akhbar.example/"
    prerender(live.app, public, ["/feeds/all.atom", "/feeds/all.json"])
    conf = nginx_config(tmp, free_port(), port_prod, int(live.url.rsplit(":", 1)[1]),
                        os.path.join(tmp, "plain"), public, public_url="https://akhbar.example")
    proc = subprocess.Popen([nginx, "-c", conf, "-p", tmp, "-g", "daemon off;"],
                            start_new_session=True, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port_prod}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                status, h, body = get(base + "/feeds/all.atom")
                break
            except OSError:
                assert time.monotonic() - t0 < 10 and proc.poll() is None, proc.stderr.read()
                time.sleep(0.05)
        assert status == 200
        assert body == (open(os.path.join(public, "feeds", "all.atom"), "rb").read())
        assert h["content-type"] == "application/atom+xml; charset=utf-8"
        assert h["access-control-allow-origin"] == "*"
        assert h["cache-control"].startswith("public, max-age=60")
        assert h["link"] == '<https://akhbar.example/feeds/all.atom>; rel="self"'  # as the app
        from web.headers import SECURITY_HEADERS
        for name, value in SECURITY_HEADERS:
            assert h[name.lower()] == value, name
        assert h["etag"].startswith('"') and "last-modified" in h
        assert get(base + "/feeds/all.json")[1]["content-type"] == \
            "application/feed+json; charset=utf-8"
        s, hz, bz = get(base + "/feeds/all.atom", {"Accept-Encoding": "gzip"})
        assert hz["content-encoding"] == "gzip" and gzip.decompress(bz) == body
        assert hz["etag"] != h["etag"] and "Accept-Encoding" in hz["vary"]
        s3, h3, _ = get(base + "/feeds/all.atom", {"Origin": "https://example.org",
                                                  "Access-Control-Request-Method": "GET"},
                        method="OPTIONS")
        assert s3 in (200, 204) and h3["access-control-allow-origin"] == "*"
        assert "If-None-Match" in h3["access-control-allow-headers"]
        assert "Cache-Control" in h3["access-control-allow-headers"]
        assert get(base + "/feeds/all.atom", {"If-None-Match": h["etag"]})[0] == 304
        assert get(base + "/feeds/all.atom", {"If-Modified-Since": h["last-modified"]})[0] == 304
        # With parameters (or no file yet) nginx hands the request to the app.
        s2, h2, b2 = get(base + "/feeds/all.atom?limit=3")
        assert s2 == 200 and h2["etag"] == '"' + hashlib.sha256(b2).hexdigest()[:32] + '"'
        assert len(etree.fromstring(b2).findall(A + "entry")) == 3
        assert get(base + "/feeds/sources/bbc.rss")[0] == 200  # not pre-rendered: the app
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


# --- with the real grouper ---------------------------------------------------------------

def test_stories_mode_with_the_real_grouper(redis_client, keys, rows):
    from aggregator import group
    from aggregator.syndicate import to_uri

    store = Store(redis_client, keys)
    save_all(store, rows)
    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in SOURCES.values()})
    g.process_pending(datetime(2018, 3, 14, tzinfo=UTC))
    server = LiveServer(make_app(redis_client, keys, g, AGG_VERSION_TTL=0.0))
    try:
        doc = json.loads(get(server.url + "/feeds/all.json?limit=200")[2])
        timeline = g.story_timeline(None, 1000)
        assert [i["_aggregator"]["story_id"] for i in doc["items"]] == [s for s, _ in timeline]
        # newest published first, as the timeline page orders them
        newest = [s.last_published for s in g.get_stories([s for s, _ in timeline])]
        assert newest == sorted(newest, reverse=True)
        # every stored report is listed under exactly one story
        reports = [r["url"] for it in doc["items"] for r in it["_aggregator"]["reports"]]
        assert sorted(reports) == sorted(to_uri(r.item.url) for r in rows)
        # (How well stories are grouped is tests/test_group*'s business, not this file's.)
        multi = max(doc["items"], key=lambda i: len(i["_aggregator"]["reports"]))
        sid = multi["_aggregator"]["story_id"]
        assert multi["url"] == f"{server.url}/stories/{sid}"
        # follow that story: its reports as articles
        sdoc = json.loads(get(f"{server.url}/feeds/stories/{quote(sid, safe='')}.json")[2])
        assert len(sdoc["items"]) == len(multi["_aggregator"]["reports"])
        topic = multi["_aggregator"]["topic"]
        if topic:
            tdoc = json.loads(get(f"{server.url}/feeds/topics/{quote(topic['id'], safe='')}.json")[2])
            assert sid in [i["_aggregator"]["story_id"] for i in tdoc["items"]]
        # Atom and RSS of the same page parse, one entry per story
        for fmt in ("atom", "rss"):
            root = etree.fromstring(get(f"{server.url}/feeds/all.{fmt}?limit=200")[2])
            n = len(root.findall(A + "entry")) if fmt == "atom" else len(root.findall("channel/item"))
            assert n == len(timeline)
    finally:
        server.close()


def test_story_entry_updated_moves_when_an_outlet_joins(redis_client, keys, rows):
    from aggregator import group
    import dataclasses

    store = Store(redis_client, keys)
    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in SOURCES.values()})
    first = [r.item for r in rows if r.story == "hamdallah-convoy-bombing-gaza"
             and r.item.source == "skynews"][:1]
    now = datetime(2018, 3, 13, 9, 0, tzinfo=UTC)
    for it in first:
        store.save_poll(SOURCES[it.source], [it], SourceState(last_poll=now), now)
    g.process_pending(now)
    server = LiveServer(make_app(redis_client, keys, g, AGG_VERSION_TTL=0.0))
    try:
        url = server.url + "/feeds/all.atom"
        _, h1, b1 = get(url)
        (e1,) = [e for e in etree.fromstring(b1).findall(A + "entry")]
        # A wire copy of the lead report, published by a third outlet an hour later.
        later = now + timedelta(hours=1)
        copy = dataclasses.replace(first[0], id="joins0001", source="cnn",
                                   url="https://arabic.cnn.com/middle-east/joins-1",
                                   guid="joins-1", published=later, first_seen=later,
                                   updated=later)
        store.save_poll(SOURCES["cnn"], [copy], SourceState(last_poll=later), later)
        g.process_pending(later)
        _, h2, b2 = get(url, {"If-None-Match": h1["etag"]})
        entries = etree.fromstring(b2).findall(A + "entry")
        assert len(entries) == 1, "the copy should join the story, not start one"
        (e2,) = entries
        assert e2.findtext(A + "id") == e1.findtext(A + "id")
        assert e2.findtext(A + "updated") > e1.findtext(A + "updated")
        assert len(e2.findall(A + "author")) == len(e1.findall(A + "author")) + 1
        assert "https://arabic.cnn.com/middle-east/joins-1" in e2.findtext(A + "content")
    finally:
        server.close()


def test_a_story_entry_moves_when_its_topic_becomes_a_named_thread(redis_client, keys,
                                                                   rows):
    # The entry of a story alone in its topic shows no topic; once another story links in,
    # it shows the thread's name and link: its updated time and Last-Modified must move, or
    # readers polling with If-Modified-Since never see the change.
    from aggregator import group

    store = Store(redis_client, keys)
    g = group.Grouper(redis_client, keys, source_rank={s.id: s.rank for s in SOURCES.values()})
    event = [r.item for r in rows if r.story == "hamdallah-convoy-bombing-gaza"]
    now = datetime(2018, 3, 13, 9, 0, tzinfo=UTC)
    for it in event:
        store.save_poll(SOURCES[it.source], [it], SourceState(last_poll=now), now)
    g.process_pending(now)
    (sid,) = {g.stories_of([it.id])[0] for it in event}
    server = LiveServer(make_app(redis_client, keys, g, AGG_VERSION_TTL=0.0))
    try:
        url = f"{server.url}/feeds/stories/{sid}.json?mode=stories"
        _, h1, b1 = get(url)
        (before,) = json.loads(b1)["items"]
        assert "tags" not in before
        # Greenblatt on Hamas after the attack: another story of the thread (gold window)
        later = datetime(2018, 3, 14, 9, 0, tzinfo=UTC)  # seen after every report of the event
        gold = Path(__file__).parent / "data" / "grouping" / "gold_window.jsonl"
        row = next(r for r in map(json.loads, gold.read_text("utf-8").splitlines())
                   if r["story"] == "greenblatt-says-hamas-unfit-to-govern-gaza")
        other = dataclasses.replace(
            next(it for it in event if it.source == "skynews"), id="reaction01",
            guid="reaction-1", url="https://www.skynewsarabia.com/middle-east/reaction-1",
            title=row["title"], summary_text=row["summary"], summary_html=row["summary"],
            published=datetime(2018, 3, 13, 22, 34, 11, tzinfo=UTC), first_seen=later,
            updated=later, content_hash="reaction-1")
        store.save_poll(SOURCES["skynews"], [other], SourceState(last_poll=later), later)
        g.process_pending(later)
        (other_story,) = g.get_stories(g.stories_of([other.id]))
        assert other_story.id != sid  # another story ...
        assert other_story.topic == g.get_stories([sid])[0].topic  # ... of the same thread
        status, h2, b2 = get(url, {"If-Modified-Since": h1["last-modified"]})
        assert status == 200, "the entry changed: not a 304"
        (after,) = json.loads(b2)["items"]
        assert after["tags"] and after["_aggregator"]["topic"]["label"]
        assert after["date_modified"] > before["date_modified"]
        assert h2["last-modified"] != h1["last-modified"]
    finally:
        server.close()


def test_arabic_tag_and_country_case(redis_client, keys, rows):
    import dataclasses

    src = dataclasses.replace(SOURCES["alarabiya"], tags=("خليج",))
    store = Store(redis_client, keys)
    now = datetime(2018, 3, 14, tzinfo=UTC)
    items = [r.item for r in rows if r.item.source == "alarabiya"]
    store.save_poll(src, items, SourceState(last_poll=now), now)
    app = make_app(redis_client, keys, GoldGrouper(*gold_stories(rows)),
                   AGG_SOURCES=(src,) + tuple(s for k, s in SOURCES.items() if k != "alarabiya"))
    server = LiveServer(app)
    try:
        path = "/feeds/tags/" + quote("خليج") + ".json"
        for _ in range(2):  # the second answer comes from the fast path
            status, h, body = get(server.url + path + "?mode=articles")
            assert status == 200
            doc = json.loads(body)
            assert sorted(i["title"] for i in doc["items"]) == sorted(i.title for i in items)
            assert doc["feed_url"] == f"{server.url}{path}?mode=articles"
        status, h, _ = get(server.url + "/feeds/countries/sa.rss?limit=5")
        assert status == 301
        assert h["location"].endswith("/feeds/countries/SA.rss?limit=5")
        # titles name the country and a known tag in Arabic, as the pages do ("SA" before)
        doc = json.loads(get(server.url + "/feeds/countries/SA.json")[2])
        assert doc["title"] == "السعودية — أخبار الشرق الأوسط"
        doc = json.loads(get(server.url + "/feeds/tags/gulf.json")[2])
        assert doc["title"] == "الخليج — أخبار الشرق الأوسط"
    finally:
        server.close()


def test_redis_down_serves_last_bytes_or_503(live, monkeypatch):
    import redis as redis_mod

    url = f"{live.url}/feeds/all.json"
    _, h, body = get(url)
    with live.app.app_context():
        from web.extensions import services

        store = services().store

    def down():
        raise redis_mod.ConnectionError("down")

    monkeypatch.setattr(store, "outputs_version", down)
    status, h2, body2 = get(url)
    assert status == 200 and body2 == body and h2["etag"] == h["etag"]
    status, _, _ = get(f"{live.url}/feeds/sources/bbc.json")  # never rendered: nothing to serve
    assert status == 503


def test_forged_host_does_not_poison_the_cache(live):
    url = f"{live.url}/feeds/all.atom"
    _, _, evil = get(url, {"Host": "evil.example"})
    assert b"http://evil.example/" in evil  # no public URL configured: links follow Host
    _, _, body = get(url)
    assert b"evil.example" not in body
    live.app.config["AGG_PUBLIC_URL"] = "https://akhbar.example/"
    _, _, body = get(f"{live.url}/feeds/all.rss")
    assert b"https://akhbar.example/feeds/all.rss" in body
    _, _, again = get(f"{live.url}/feeds/all.rss", {"Host": "evil.example"})
    assert again == body


def test_story_paging_survives_shared_timestamps(redis_client, keys, rows):
    # One poll stores many items with one first-seen time, so many stories share one
    # `updated` score: a score-only cursor would skip all but the first of them.
    import dataclasses

    stories, topics = gold_stories(rows)
    same = datetime(2018, 3, 14, 6, 0, tzinfo=UTC)
    stories = {k: dataclasses.replace(s, updated=same) for k, s in stories.items()}
    save_all(Store(redis_client, keys), rows)
    server = LiveServer(make_app(redis_client, keys, GoldGrouper(stories, topics)))
    try:
        ids, pages = walk(server, server.url + "/feeds/all.json?limit=4")
        got = [i.rsplit("/", 1)[1] for i in ids]
        assert len(got) == len(set(got)) and set(got) == set(stories) and pages > 2
    finally:
        server.close()


def test_a_feed_retention_empties_keeps_a_last_modified_that_moved_forward(live):
    """A review saw /feeds/sources/bbc-sport.json go from its last entry's time back to
    the empty-feed constant (2026-01-01) after a trim: a client holding the later date got
    304s, and kept showing the removed entries."""
    url = f"{live.url}/feeds/sources/bbc.json"
    _, h, body = get(url)
    assert json.loads(body)["items"]
    held = parsedate_to_datetime(h["last-modified"])
    trimmed_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=400)
    live.store.trim(trimmed_at, timedelta(days=1), 10**6)  # everything is older than that
    status, h2, body2 = get(url)
    assert status == 200 and json.loads(body2)["items"] == []
    assert parsedate_to_datetime(h2["last-modified"]) == trimmed_at > held
    assert get(url, {"If-Modified-Since": h["last-modified"]})[0] == 200


@pytest.mark.parametrize("limit", [1, 2, 3, 7])
def test_articles_paging_lists_an_article_of_two_feeds_once(redis_client, keys, rows, limit):
    """A review walking mode=articles with limit=7 met 62 articles twice: copies from two
    feeds of one outlet share a published time, and a page could end between them."""
    import dataclasses

    store = Store(redis_client, keys)
    now = datetime(2018, 3, 14, tzinfo=UTC)
    mirror = dataclasses.replace(SOURCES["bbc"], id="bbc-mirror", rank=9)
    items = [r.item for r in rows if r.item.source == "bbc"]
    store.save_poll(SOURCES["bbc"], items, SourceState(last_poll=now), now)
    store.save_poll(mirror, [dataclasses.replace(it, id=it.id + "m", source="bbc-mirror")
                             for it in items], SourceState(last_poll=now), now)
    app = make_app(redis_client, keys, GoldGrouper(*gold_stories(rows)),
                   AGG_SOURCES=tuple(SOURCES.values()) + (mirror,))
    server = LiveServer(app)
    try:
        urls, url = [], f"{server.url}/feeds/all.json?mode=articles&limit={limit}"
        while url:
            doc = json.loads(get(url)[2])
            urls += [i["url"] for i in doc["items"]]
            url = doc.get("next_url")
        assert len(urls) == len(set(urls)) == len({it.url for it in items})
    finally:
        server.close()
