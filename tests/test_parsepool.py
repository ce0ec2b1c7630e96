"""Feeds fetched and read in helper processes (aggregator/parsepool.py): the same result as
in the polling thread, and a process that dies fails only the feed that killed it."""
from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aggregator import matching
from aggregator.fetch import Fetcher
from aggregator.parsepool import CRASHED, ParsePool
from aggregator.settings import Settings
from aggregator.store import Store, prepare_items
from aggregator.types import Outcome, Source, SourceState
from aggregator.update import Fetched, Pipeline, fetch_items, read_feed, update_source
from feedserver import Feed, FeedServer, ant_items
from httptest import serving
from processes import ends_when_its_owner_exits, ends_with_its_owner_killed

FEEDS = os.path.join(os.path.dirname(__file__), "data", "feeds")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
SETTINGS = Settings(allow_private_networks=True, fetch_timeout=3.0)


@pytest.fixture(scope="module")
def pool():
    p = ParsePool(2, SETTINGS)
    yield p
    p.close()


@pytest.fixture
def server():
    s = FeedServer().start()
    yield s
    s.stop()


def fixture_feeds():
    for name in sorted(f[: -len(".xml")] for f in os.listdir(FEEDS) if f.endswith(".xml")):
        path = os.path.join(FEEDS, f"{name}.headers.json")
        headers = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                headers = json.load(f)
        with open(os.path.join(FEEDS, f"{name}.xml"), "rb") as f:
            yield name, f.read(), headers


@pytest.fixture(scope="module")
def fixture_server():
    """The fixture feeds as recorded: their bytes with their headers (content-type, etag)."""
    feeds = {f"/{name}.xml": (body, headers) for name, body, headers in fixture_feeds()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body, headers = feeds[self.path]
            self.send_response(200)
            for name in ("content-type", "etag", "last-modified"):
                if name in headers:
                    self.send_header(name, headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    with serving(httpd):
        yield f"http://127.0.0.1:{httpd.server_port}", sorted(feeds)
    httpd.server_close()


def _comparable(fetched: Fetched) -> Fetched:
    return replace(fetched, result=replace(fetched.result, body=None, headers={}, elapsed=0.0))


def test_every_fixture_feed_reads_the_same_in_a_process(pool, fixture_server):
    # the real feeds and the chaos ones (bomb, XXE, XSS, bad encodings, malformed), fetched
    # over HTTP: items, outcome, validators and error message all cross the process
    # boundary unchanged, and the body and headers do not come back
    base, paths = fixture_server
    fetcher = Fetcher(SETTINGS)
    try:
        for path in paths:
            source = Source(id=path[1:-4].replace("_", "-"), url=base + path, title=path)
            here = fetch_items(source, SourceState(), fetcher, NOW)
            there = pool.fetch_items(source, SourceState(), NOW)
            assert there.result.body is None and not there.result.headers
            # the items come back in the store's form, byte for byte what save_poll
            # would send for the items read here
            assert there.items == prepare_items(here.items), path
            assert _comparable(there) == _comparable(replace(here, items=there.items)), path
            # the matching records cross too: the grouper reads them instead of tokenising
            assert json.loads(there.items.match_records) == [
                matching.record(i.title, i.summary_text) for i in here.items], path
    finally:
        fetcher.close()
    assert len(paths) >= 17


def test_a_poll_through_the_pool_stores_correct_arabic_from_windows_1256(server, redis_client, keys, pool):
    items = ant_items("CNN")[:8]
    server.feeds["/cnn.xml"] = Feed("CNN", items, encoding="windows-1256")
    fetcher = Fetcher(SETTINGS)
    pipe = Pipeline(Store(redis_client, keys), fetcher, rng=random.Random(0), parser=pool)
    source = Source(id="cnn", url=server.url("/cnn.xml"), title="CNN")
    try:
        report = update_source(source, pipe, NOW)
        again = update_source(source, pipe, NOW)
    finally:
        fetcher.close()
    assert report.outcome is Outcome.OK and report.new == 8
    ids = [i for i, _ in pipe.store.timeline_ids(limit=100)]
    titles = {it.title for it in pipe.store.get_items(ids)}
    assert titles == {" ".join(d["title"].split()) for d in items}
    assert all("\ufffd" not in t for t in titles)
    # the validators the helper received were saved: the second poll was a conditional 304
    assert again.outcome is Outcome.NOT_MODIFIED
    assert [h["status"] for h in server.hits("/cnn.xml")] == [200, 304]
    assert server.hits("/cnn.xml")[1]["inm"]


def _bbc() -> bytes:
    return next(b for name, b, _ in fixture_feeds() if name == "bbc")


def _read_bbc(source: Source, now: datetime) -> Fetched:
    """A poll without HTTP: the BBC fixture as if fetched."""
    from aggregator.types import FetchResult

    result = FetchResult(Outcome.OK, source.url, source.url, 200)
    items, outcome, error = read_feed(source, _bbc(), {"content-type": "application/xml"},
                                      source.url, now)
    return Fetched(result, outcome, items, error)


def _slow_poll(fetcher, source, state, now):
    time.sleep(1.0)  # a slow server: the helper waits, it does not compute
    return _read_bbc(source, now)


def test_one_process_has_many_polls_in_flight():
    # polls mostly wait on the network: one helper must not take them one at a time
    pool = ParsePool(1, SETTINGS, task=_slow_poll)
    sources = [Source(id=f"s{i}", url=f"http://127.0.0.1/{i}.xml", title="x") for i in range(6)]
    try:
        pool.fetch_items(sources[0], SourceState(), NOW)  # the helper is up
        started = time.monotonic()
        with ThreadPoolExecutor(6) as threads:
            results = list(threads.map(lambda s: pool.fetch_items(s, SourceState(), NOW), sources))
        took = time.monotonic() - started
    finally:
        pool.close()
    assert all(r.outcome is Outcome.OK and len(r.items) == 10 for r in results)
    assert took < 4.0, took  # one at a time: 6 s


def _dies_on_poison(fetcher, source, state, now):
    """A poll whose process dies, as a parser crash in C would take it (module level: the
    pool's processes import it by name)."""
    if source.id.startswith("poison"):
        time.sleep(0.2)  # the others are in flight when it dies
        os._exit(70)
    time.sleep(0.5)
    return _read_bbc(source, now)


def test_a_process_that_dies_fails_only_the_feed_that_killed_it():
    # one process, seven polls in flight at once: the poisoned one kills it, twice
    pool = ParsePool(1, SETTINGS, task=_dies_on_poison)
    sources = [Source(id=f"ok{i}", url=f"http://127.0.0.1/{i}.xml", title="x") for i in range(6)]
    sources.insert(2, Source(id="poison", url="http://127.0.0.1/p.xml", title="x"))
    try:
        with ThreadPoolExecutor(7) as threads:
            results = list(threads.map(lambda s: pool.fetch_items(s, SourceState(), NOW), sources))
        # and the pool works on afterwards
        after = pool.fetch_items(sources[0], SourceState(), NOW)
    finally:
        pool.close()
    outcomes = {s.id: (r.outcome, r.error) for s, r in zip(sources, results)}
    assert outcomes.pop("poison") == (Outcome.ERROR, CRASHED)
    assert set(outcomes.values()) == {(Outcome.OK, None)}
    assert all(len(r.items) == 10 for s, r in zip(sources, results) if s.id != "poison")
    assert after.outcome is Outcome.OK and len(after.items) == 10


def _hangs_on_slow(fetcher, source, state, now):
    if source.id == "slow":
        time.sleep(600)
    if source.id == "beside":
        time.sleep(0.5)  # in flight beside the slow one when its process is replaced
    return _read_bbc(source, now)


def test_a_poll_that_hangs_is_cut_off_and_its_process_replaced():
    pool = ParsePool(1, SETTINGS, task=_hangs_on_slow, timeout=1.5)
    slow, beside, fine = (Source(id=i, url=f"http://127.0.0.1/{i}.xml", title="x")
                          for i in ("slow", "beside", "fine"))
    try:
        with ThreadPoolExecutor(2) as threads:
            hung = threads.submit(pool.fetch_items, slow, SourceState(), NOW)
            time.sleep(1.2)
            next_to_it = threads.submit(pool.fetch_items, beside, SourceState(), NOW)
            hung, next_to_it = hung.result(), next_to_it.result()
        after = pool.fetch_items(fine, SourceState(), NOW)
    finally:
        pool.close()
    assert (hung.outcome, hung.error) == (Outcome.ERROR, "polling the feed took longer than 1.5 s")
    assert next_to_it.outcome is Outcome.OK and len(next_to_it.items) == 10
    assert after.outcome is Outcome.OK and len(after.items) == 10


def _pid(fetcher, source, state, now):
    return os.getpid()


# A worker with a one-process pool: it prints that process's pid (asked through the pool).
_OWNER_WITH_A_POOL = (
    "import time\n"
    "from datetime import datetime, timezone\n"
    "from aggregator.parsepool import ParsePool\n"
    "from aggregator.types import Source, SourceState\n"
    "from test_parsepool import _pid\n"
    "pool = ParsePool(1, task=_pid)\n"
    "s = Source(id='x', url='http://127.0.0.1/x', title='x')\n"
    "print(pool.fetch_items(s, SourceState(), datetime.now(timezone.utc)), flush=True)\n"
)


def test_pool_processes_end_with_a_worker_killed_with_sigkill():
    # a pool process blocked on its pipe must see end-of-file when the worker dies: with
    # a copy of the worker's end (a forked pool, concurrent.futures' queues) it waits for ever
    assert ends_with_its_owner_killed(_OWNER_WITH_A_POOL + "time.sleep(60)\n")


def test_a_worker_leaving_without_closing_the_pool_still_exits():
    # an exception before Pipeline.close(): multiprocessing's exit handler joins the pool
    # processes, which ignore its SIGTERM and wait for end-of-file on their pipes
    assert ends_when_its_owner_exits(_OWNER_WITH_A_POOL + "raise RuntimeError('a bug before close()')\n")


def test_pool_processes_outlast_ctrl_c_and_sigterm_sent_to_the_process_group():
    # the worker finishes in-flight polls after Ctrl-C or SIGTERM: they still need
    # the pool, which gets the same signal from the terminal or the service manager
    import signal

    pool = ParsePool(1, task=_pid)
    s = Source(id="x", url="http://127.0.0.1/x", title="x")
    try:
        pid = pool.fetch_items(s, SourceState(), NOW)
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert pool.fetch_items(s, SourceState(), NOW) == pid
    finally:
        pool.close()


def test_a_poll_sent_after_close_fails_at_once():
    # a poll racing the worker's stop gets an answer, not a wait for the poll timeout
    pool = ParsePool(1, task=_pid, timeout=2.0)
    pool.close()
    s = Source(id="x", url="http://127.0.0.1/x", title="x")
    started = time.monotonic()
    late = pool.fetch_items(s, SourceState(), NOW)
    assert (late.outcome, late.error) == (Outcome.ERROR, "the worker is stopping")
    assert time.monotonic() - started < 1.0
