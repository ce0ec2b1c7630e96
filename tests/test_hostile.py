"""The real worker (worker.py as a subprocess) against tests/hostile_server.py, alongside
healthy feeds: nothing crashes, healthy sources are fully ingested, every fault gets its
outcome class, Retry-After windows are respected across a kill -9, slow faults are bounded
in time, and the 50 MB body, the gzip bomb and the XML bombs are bounded in memory.

Parser level: entity declarations are refused by parse_feed before either parser sees
them; the lxml fast path, given a bomb directly, neither expands it nor fetches anything.
"""
from __future__ import annotations

import signal
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from aggregator.errors import ParseError
from aggregator.fastparse import fast_parse
from aggregator.normalize import clean_text
from aggregator.parse import parse_feed
from aggregator.store import Store
from hostile_server import (
    HostileServer, PeakRSS, ant_items, ant_rss, billion_laughs, external_dtd, feeds_yaml,
    malformed, quadratic_blowup, rss, start_worker, stats_json, utf16_bomb, wait_until,
    worker_env, xxe, xxe_parameter,
)

UTC = timezone.utc
OUTLETS = ["skynews", "alarabia", "france24", "BBC", "CNN"]


def healthy(server: HostileServer, host: int = 1) -> dict[str, str]:
    urls = {}
    for o in OUTLETS:
        enc = "windows-1256" if o == "CNN" else "utf-8"
        ctype = f"application/rss+xml; charset={enc}"
        urls[o.lower()] = server.add(f"/{o.lower()}.xml", "ok", ant_rss(o, encoding=enc),
                                     host=host, ctype=ctype)
    return urls


def titles(store: Store, source: str) -> set[str]:
    ids = [i for i, _ in store.timeline_ids(store.keys.source_timeline(source), limit=1000)]
    return {it.title for it in store.get_items(ids)}


def assert_healthy_ingested(store: Store) -> None:
    for o in OUTLETS:
        want = {clean_text(d["title"]) for d in ant_items(o)}
        assert store.count_items(o.lower()) == len(ant_items(o)), o
        assert titles(store, o.lower()) == want, o


def rfc822(dt: datetime) -> str:
    return format_datetime(dt, usegmt=True)


# --------------------------------------------------------------------------- --once

def catalogue(server: HostileServer, now: datetime) -> dict[str, str]:
    """Every fast fault, id -> url; the ids say what each is."""
    s, bbc = server, ant_rss("BBC")
    cnn1256 = ant_rss("CNN", encoding="windows-1256")
    word = "الانتخابات"
    stray = bbc.replace(word.encode(), word.encode("cp1256"), 1).replace(b"</title>", b"\xff\xfe</title>", 1)
    u = {
        "h500": s.add("/h500.xml", "status", status=500),
        "h503": s.add("/h503.xml", "status", status=503, retry_after="seconds", retry_seconds=120),
        "h429": s.add("/h429.xml", "status", status=429, retry_after="date", retry_seconds=600),
        "slow": s.add("/slow.xml", "slow", ant_rss("skynews"), host=2, delay=3.0),
        "reset": s.add("/reset.xml", "reset"),
        "truncated": s.add("/truncated.xml", "truncated", bbc),
        "malformed": s.add("/malformed.xml", "raw", malformed()),
        "html": s.add("/html.xml", "raw", b"<html><body><p>hello</p></body></html>",
                      ctype="text/html; charset=utf-8"),
        "empty": s.add("/empty.xml", "raw", b""),
        "stray-bytes": s.add("/stray.xml", "raw", stray),
        "lying-utf8": s.add("/lying-utf8.xml", "raw",
                            cnn1256.replace(b'encoding="windows-1256"', b'encoding="utf-8"')),
        "lying-latin1": s.add("/lying-latin1.xml", "raw", bbc,
                              ctype="application/rss+xml; charset=iso-8859-1"),
        "r302": s.add("/r302.xml", "redirect", status=302, to="/r302-2.xml"),
        "r301": s.add("/r301.xml", "redirect", status=301, to="/moved.xml"),
        "loop": s.add("/loop.xml", "redirect", to="/loop.xml"),
        "chain7": s.add("/c0.xml", "redirect", to="/c1.xml"),
        "to-javascript": s.add("/to-js.xml", "redirect", to="javascript:alert(1)"),
        "to-file": s.add("/to-file.xml", "redirect", to="file:///etc/passwd"),
        "gone": s.add("/gone.xml", "status", status=410),
        "huge": s.add("/huge.xml", "huge", bbc, host=3, mb=50),
        "declared-huge": s.add("/declared-huge.xml", "declared_huge", bbc),
        "gzip-bomb": s.add("/gzip-bomb.xml", "gzip_bomb", host=4),
        "billion-laughs": s.add("/laughs.xml", "raw", billion_laughs()),
        "quadratic": s.add("/quadratic.xml", "raw", quadratic_blowup()),
        "xxe": s.add("/xxe.xml", "raw", xxe(s.canary)),
        "xxe-param": s.add("/xxe-param.xml", "raw", xxe_parameter(s.canary)),
        "utf16-bomb": s.add("/utf16.xml", "raw", utf16_bomb(), ctype="application/xml"),
        "external-dtd": s.add("/external-dtd.xml", "raw", external_dtd(s.canary)),
        "dates": s.add("/dates.xml", "raw", rss([
            {"title": "بلا تاريخ ١", "link": "https://example.org/d1", "guid": "d1"},
            {"title": "بلا تاريخ ٢", "link": "https://example.org/d2", "guid": "d2", "date": ""},
            {"title": "تاريخ غير مفهوم", "link": "https://example.org/d3", "guid": "d3",
             "date": "قريبا"},
            {"title": "بعد يومين", "link": "https://example.org/f1", "guid": "f1",
             "date": rfc822(now + timedelta(days=2))},
            {"title": "بعد عشر سنوات", "link": "https://example.org/f2", "guid": "f2",
             "date": rfc822(now + timedelta(days=3650))},
            {"title": "بعد خمس دقائق", "link": "https://example.org/f3", "guid": "f3",
             "date": rfc822(now + timedelta(minutes=5))},
            {"title": "عام ١٩٧٠", "link": "https://example.org/e", "guid": "e",
             "date": "Thu, 01 Jan 1970 00:00:00 GMT"},
        ])),
        "dup-guid": s.add("/dup.xml", "raw", rss([
            {"title": "خبر أ", "link": "https://example.org/a", "guid": "same-1"},
            {"title": "خبر ب", "link": "https://example.org/b", "guid": "same-1"},
            {"title": "خبر ج", "link": "https://example.org/c", "guid": "same-2"},
            {"title": "خبر د", "link": "https://example.org/d", "guid": "same-2"},
            {"title": "خبر أ", "link": "https://example.org/a", "guid": "same-1"},
        ])),
    }
    s.add("/r302-2.xml", "redirect", status=302, to="/moved.xml")
    s.add("/moved.xml", "ok", bbc)
    for i in range(1, 7):
        s.add(f"/c{i}.xml", "redirect", to=f"/c{i + 1}.xml")
    s.add("/c7.xml", "ok", bbc)
    return u


EXPECTED = {  # id -> (outcome class, HTTP status)
    "h500": ("http-5xx", 500), "h503": ("http-5xx", 503), "h429": ("rate-limited", 429),
    "slow": ("ok", 200), "reset": ("protocol", None), "truncated": ("protocol", None),
    "malformed": ("ok", 200), "html": ("not-a-feed", 200), "empty": ("not-a-feed", 200),
    "stray-bytes": ("ok", 200), "lying-utf8": ("ok", 200), "lying-latin1": ("ok", 200),
    "r302": ("ok", 200), "r301": ("ok", 200), "loop": ("too-many-redirects", 302),
    "chain7": ("too-many-redirects", 302), "to-javascript": ("blocked", 302),
    "to-file": ("blocked", 302), "gone": ("gone", 410), "huge": ("too-large", 200),
    "declared-huge": ("too-large", 200), "gzip-bomb": ("too-large", 200),
    "billion-laughs": ("not-a-feed", 200), "quadratic": ("not-a-feed", 200),
    "xxe": ("not-a-feed", 200), "xxe-param": ("not-a-feed", 200),
    "utf16-bomb": ("not-a-feed", 200), "external-dtd": ("ok", 200), "dates": ("ok", 200),
    "dup-guid": ("ok", 200),
}


@pytest.fixture
def server():
    s = HostileServer(hosts=4).start()
    yield s
    s.stop()


def test_once_classifies_every_fault_and_ingests_healthy_sources(server, redis_url,
                                                                 redis_client, keys, tmp_path):
    now = datetime.now(UTC)
    urls = healthy(server) | catalogue(server, now)
    assert set(EXPECTED) <= set(urls)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    t0 = time.monotonic()
    proc = start_worker(["--once"], env)
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = out.strip().splitlines()
    assert len(lines) == len(urls) + 1
    assert lines[-1].startswith(f"{5 + sum(v[0] == 'ok' for v in EXPECTED.values())}/{len(urls)}")
    assert elapsed < 45, f"the run took {elapsed:.1f}s"  # slowest fault: a 3 s delay

    store = Store(redis_client, keys)
    assert_healthy_ingested(store)
    stats = stats_json(env)["sources"]
    for sid, (outcome, status) in EXPECTED.items():
        st = stats[sid]
        assert (st["last_status"], st["last_http_status"]) == (outcome, status), (sid, st["last_error"])
        if outcome != "ok":
            assert st["last_error"] and st["errors"] == 1 and st["items"] == 0, (sid, st)

    def state(sid):
        return store.load_state(sid)

    # Retry-After, both forms, stored and scheduled no earlier
    for sid, secs in (("h503", 120), ("h429", 600)):
        st = state(sid)
        assert st.retry_after_until is not None
        assert abs((st.retry_after_until - now).total_seconds() - secs) < 15, sid
        assert st.next_poll >= st.retry_after_until
    assert state("h500").retry_after_until is None
    # 410: disabled and says so; 301 chain: suggested edit; 302: none
    assert state("gone").next_poll is None and "410" in state("gone").disabled_reason
    assert stats["gone"]["enabled"] is False
    assert state("r301").suggested_url == server.url("/moved.xml")
    assert state("r302").suggested_url is None
    assert "more than 5 redirects" in state("chain7").last_error
    assert "javascript:" in state("to-javascript").last_error
    assert "10,485,760-byte cap" in state("huge").last_error
    for sid in ("billion-laughs", "quadratic", "xxe", "xxe-param", "utf16-bomb"):
        assert state(sid).last_error == "entity declarations refused", sid
    assert not server.canary_hits(), "an external entity or DTD was fetched"
    # the huge body was cut off: the client hung up long before 50 MB were sent
    assert len(server.hits("/huge.xml")) == 1

    # encodings repaired, Arabic intact
    bbc_titles = {clean_text(d["title"]) for d in ant_items("BBC")}
    assert titles(store, "lying-latin1") == bbc_titles
    assert titles(store, "lying-utf8") == {clean_text(d["title"]) for d in ant_items("CNN")}
    stray = titles(store, "stray-bytes")
    assert len(stray) == 16 and any("الانتخابات" in t for t in stray)
    assert not any("\ufffd" in t or "\xff" in t for t in stray)
    assert store.count_items("malformed") >= 10  # what parsed of a broken feed is kept
    assert store.count_items("r302") == store.count_items("chain7") + 16

    # dates: missing, unreadable, future and placeholder → our first-seen time, never ahead
    items = {it.title: it for it in store.get_items(
        [i for i, _ in store.timeline_ids(keys.source_timeline("dates"))])}
    assert len(items) == 7
    done = datetime.now(UTC)
    for it in items.values():
        assert now - timedelta(seconds=5) <= it.published <= done, (it.title, it.published)
        assert it.published == it.first_seen or it.title == "بعد خمس دقائق"
    # duplicate GUIDs: different stories kept apart, an exact repeat dropped
    dup = {it.title for it in store.get_items(
        [i for i, _ in store.timeline_ids(keys.source_timeline("dup-guid"))])}
    assert dup == {"خبر أ", "خبر ب", "خبر ج", "خبر د"}


def test_peak_memory_is_bounded_on_50mb_body_gzip_bomb_and_xml_bombs(server, redis_url, keys,
                                                                      tmp_path):
    """Peak RSS (VmHWM) of the largest process of `worker.py --once` (the worker and its
    helpers, which fetch and parse) with only healthy feeds, then with the same
    feeds plus a 50 MB body without Content-Length, a gzip bomb (1 GiB from 1 MB), a 50 MB
    declared body and the XML bombs, all polled at once (each on its own address, so the
    per-host limit does not serialise them).

    Bound: baseline + 60 MB. The body cap is 10 MB after decompression and is checked per
    64 KiB read, so the two capped bodies in flight hold at most ~2 × 10 MB, plus the
    allocator's slack; the XML bombs are refused before parsing. A worker that buffered
    the 50 MB body (and joined it) would need ~100 MB more; one that inflated the gzip
    bomb, a gigabyte."""
    urls = healthy(server)
    feeds = tmp_path / "feeds.yaml"
    env = worker_env(redis_url, keys.prefix, feeds)

    def run(sources) -> tuple[float, str]:
        feeds.write_text(feeds_yaml(sources), encoding="utf-8")
        proc = start_worker(["--once"], env)
        rss_ = PeakRSS(proc.pid)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        peak = rss_.join()
        # the worker, its fork server and resource tracker, two feed-reading processes and
        # the grouping process: the helpers were sampled too
        assert len(rss_.peaks_kb) >= 5, rss_.peaks_kb
        return peak, out

    base, _ = run(urls)
    bbc = ant_rss("BBC")
    heavy = urls | {
        "huge": server.add("/huge.xml", "huge", bbc, host=2, mb=50),
        "gzip-bomb": server.add("/gzip-bomb.xml", "gzip_bomb", host=3),
        "declared-huge": server.add("/declared-huge.xml", "declared_huge", bbc, host=4),
        "billion-laughs": server.add("/laughs.xml", "raw", billion_laughs()),
        "quadratic": server.add("/quadratic.xml", "raw", quadratic_blowup()),
        "utf16-bomb": server.add("/utf16.xml", "raw", utf16_bomb(), ctype="application/xml"),
    }
    peak, out = run(heavy)
    print(f"\npeak RSS: healthy only {base:.1f} MB, with 50 MB body + gzip bomb + "
          f"XML bombs {peak:.1f} MB")
    assert base > 20  # the sampler saw the process
    for sid in ("huge", "gzip-bomb", "declared-huge"):
        assert any(line.startswith(sid) and "too-large" in line for line in out.splitlines())
    assert peak < base + 60, f"peak {peak:.1f} MB vs baseline {base:.1f} MB"


# --------------------------------------------------------------------------- long-running

def test_long_running_worker_respects_retry_after_across_kill_9_and_bounds_slow_faults(
        server, redis_url, redis_client, keys, tmp_path):
    """interval 1m; 503 with Retry-After: 70 (seconds) and 429 with an HTTP-date 70 s
    ahead. A worker that ignored them would retry at its 54-66 s backoff, inside the
    window; a worker that forgot them on restart would retry at once after the kill -9.
    The server counts requests inside an announced window: there must be none, and the
    retry must come once the window is over. Meanwhile a stalled body and a body dripped
    a few bytes at a time must end as timeouts within the fetch deadline, and a feed that
    retitles its stories on the next poll updates them in place. A server dripping header
    lines must end the same way."""
    bbc = ant_rss("BBC")
    urls = {
        "bbc": server.add("/bbc.xml", "ok", bbc),
        "h503": server.add("/h503.xml", "status", status=503, retry_after="seconds",
                           retry_seconds=70, on=1, body=bbc),
        "h429": server.add("/h429.xml", "status", status=429, retry_after="date",
                           retry_seconds=70, on=1, body=ant_rss("CNN")),
        "retitled": server.add("/retitled.xml", "ok", bodies=[
            ant_rss("skynews"), ant_rss("skynews", retitle="محدث: ")]),
        "stall": server.add("/stall.xml", "stall", bbc, host=2),
        "drip": server.add("/drip.xml", "drip", bbc, host=3),
        "header-drip": server.add("/header-drip.xml", "header_drip", host=4, every=2.0),
    }
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls, interval="1m"), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    store = Store(redis_client, keys)
    log = open(tmp_path / "worker.log", "w+")
    proc = start_worker([], env, stdout=log, stderr=log)
    try:
        assert wait_until(lambda: store.load_state("h503").last_status
                          and store.load_state("h429").last_status
                          and store.load_state("retitled").last_status, timeout=30)
        proc.send_signal(signal.SIGKILL)  # mid-run: the stall and the drip are in flight
        proc.wait(10)
        proc = start_worker([], env, stdout=log, stderr=log)
        assert wait_until(lambda: len(server.hits("/h503.xml")) >= 2
                          and len(server.hits("/h429.xml")) >= 2
                          and len(server.hits("/retitled.xml")) >= 2
                          and store.load_state("drip").last_status == "timeout"
                          and store.load_state("header-drip").last_status == "timeout"
                          and store.load_state("h503").last_status == "ok"
                          and store.load_state("h429").last_status == "ok", timeout=110)
        assert proc.poll() is None, "the worker died"
    finally:
        # SIGKILL, not SIGTERM: the stall and the drip are always in flight, and SIGTERM
        # waits for in-flight polls (up to the 40 s fetch deadline).
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        log.seek(0)
        text = log.read()
        log.close()
    assert "Traceback" not in text, text[-3000:]

    # (the wait above also waited for the second polls' results to be stored: the server
    # sees a request before the worker has saved what it got, and the kill is abrupt)
    assert server.early_retries("/h503.xml") == 0
    assert server.early_retries("/h429.xml") == 0
    for path in ("/h503.xml", "/h429.xml"):
        first, second = server.hits(path)[:2]
        assert second["time"] - first["time"] >= 69, path
    assert store.load_state("h503").last_status == "ok"
    assert store.count_items("h503") == store.count_items("h429") == 16

    stall, drip = store.load_state("stall"), store.load_state("drip")
    assert stall.last_status == "timeout" and stall.latency_ms < 25_000, stall
    # the fetch deadline is 2 × the 20 s timeout, checked after every socket read
    assert drip.last_status == "timeout" and drip.latency_ms < 45_000, drip
    hdrip = store.load_state("header-drip")
    assert hdrip.last_status == "timeout" and hdrip.latency_ms < 45_000, hdrip

    ids = [i for i, _ in store.timeline_ids(keys.source_timeline("retitled"))]
    items = store.get_items(ids)
    assert len(items) == 16  # updated in place, no duplicates
    assert all(it.title.startswith("محدث: ") and it.updated > it.first_seen for it in items)
    assert store.count_items("bbc") == 16


# --------------------------------------------------------------------------- parsers

BOMBS = {"billion-laughs": billion_laughs, "quadratic": quadratic_blowup,
         "utf16": utf16_bomb}


@pytest.mark.parametrize("name", sorted(BOMBS))
@pytest.mark.parametrize("fast", [True, False])
def test_parse_feed_refuses_entity_bombs_before_parsing(name, fast):
    t = time.perf_counter()
    with pytest.raises(ParseError, match="entity declarations refused"):
        parse_feed(BOMBS[name](), {"Content-Type": "application/rss+xml"}, "http://x.test/",
                   allow_fast=fast)
    assert time.perf_counter() - t < 0.5


def test_lxml_fast_path_alone_neither_expands_nor_fetches(server):
    """Defence in depth: were the refusal removed, lxml (resolve_entities=False,
    no_network, no DTD loading, libxml2's amplification limit) still stays bounded."""
    from lxml import etree

    from aggregator.fastparse import Unsupported

    for body in (billion_laughs(), quadratic_blowup(), utf16_bomb()):
        t = time.perf_counter()
        with pytest.raises((etree.XMLSyntaxError, Unsupported)):
            fast_parse(body, "http://x.test/")
        assert time.perf_counter() - t < 0.5
    for body in (xxe(server.canary), xxe_parameter(server.canary), external_dtd(server.canary)):
        try:
            feed = fast_parse(body, "http://x.test/")
        except (etree.XMLSyntaxError, Unsupported):
            continue
        for e in feed.entries:
            assert "root:" not in (e.title or "") + (e.summary or "")
    time.sleep(0.2)
    assert not server.canary_hits()


def test_external_dtd_is_not_fetched_by_either_parser(server):
    for fast in (True, False):
        feed = parse_feed(external_dtd(server.canary), {"Content-Type": "application/rss+xml"},
                          "http://x.test/", allow_fast=fast)
        assert [e.title for e in feed.entries] == ["عنوان مع DTD خارجي"]
    time.sleep(0.2)
    assert not server.canary_hits()


# --------------------------------------------------------------------------- fetcher

def test_a_refused_body_does_not_poison_the_next_poll_of_the_same_host(server):
    """A body refused for its declared size must not stay on a pooled connection: the
    next source on that host would read it as its status line (protocol error)."""
    from aggregator.fetch import Fetcher
    from aggregator.settings import Settings
    from aggregator.types import SourceState

    bbc = ant_rss("BBC")
    big = server.add("/declared-huge.xml", "declared_huge", bbc)
    ok = server.add("/ok.xml", "ok", bbc)
    fetcher = Fetcher(Settings(allow_private_networks=True), maxsize=1)
    now = datetime.now(UTC)
    try:
        assert fetcher.fetch(big, SourceState(), now).outcome.value == "too-large"
        r = fetcher.fetch(ok, SourceState(), now)
        assert (r.outcome.value, r.error) == ("ok", None)
    finally:
        fetcher.close()


@pytest.mark.parametrize("fault", ["header_drip", "drip", "stall"])
def test_every_slow_response_ends_at_the_fetch_deadline(server, fault):
    """Deadline = 2 × fetch_timeout for the whole fetch: headers dripped one line a second,
    a body dripped a few bytes every half second, or a body that stops (then the 1 s read
    timeout ends it first)."""
    from aggregator.fetch import Fetcher
    from aggregator.settings import Settings
    from aggregator.types import SourceState

    url = server.add("/slow.xml", fault, ant_rss("BBC"), every=0.5)
    fetcher = Fetcher(Settings(allow_private_networks=True, fetch_timeout=1.0))
    t = time.monotonic()
    try:
        r = fetcher.fetch(url, SourceState(), datetime.now(UTC))
    finally:
        fetcher.close()
    assert r.outcome.value == "timeout", r.error
    assert time.monotonic() - t < 3.5
