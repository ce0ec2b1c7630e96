"""Feeds read in parse processes (aggregator/parsepool.py): the same result as reading them
in the polling thread, and a process that dies fails only the feed that killed it."""
from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from aggregator.fetch import Fetcher
from aggregator.parsepool import CRASHED, ParsePool
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.types import Outcome, Source
from aggregator.update import Pipeline, read_feed, update_source
from feedserver import Feed, FeedServer, ant_items
from processes import ends_when_its_owner_exits, ends_with_its_owner_killed

FEEDS = os.path.join(os.path.dirname(__file__), "data", "feeds")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def pool():
    p = ParsePool(2)
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


def test_every_fixture_feed_reads_the_same_in_a_process(pool):
    # the real feeds and the chaos ones (bomb, XXE, XSS, bad encodings, malformed): items,
    # outcome and error message all cross the process boundary unchanged
    names = []
    for name, body, headers in fixture_feeds():
        source = Source(id=name.replace("_", "-"), url=f"http://127.0.0.1/{name}.xml", title=name)
        here = read_feed(source, body, headers, source.url, NOW)
        there = pool.read(source, body, headers, source.url, NOW)
        assert there == here, name
        names.append(name)
    assert len(names) >= 17


def test_a_poll_through_the_pool_stores_correct_arabic_from_windows_1256(server, redis_client, keys, pool):
    items = ant_items("CNN")[:8]
    server.feeds["/cnn.xml"] = Feed("CNN", items, encoding="windows-1256")
    fetcher = Fetcher(Settings(allow_private_networks=True, fetch_timeout=3.0))
    pipe = Pipeline(Store(redis_client, keys), fetcher, rng=random.Random(0), parser=pool)
    try:
        report = update_source(Source(id="cnn", url=server.url("/cnn.xml"), title="CNN"), pipe, NOW)
    finally:
        fetcher.close()
    assert report.outcome is Outcome.OK and report.new == 8
    ids = [i for i, _ in pipe.store.timeline_ids(limit=100)]
    titles = {it.title for it in pipe.store.get_items(ids)}
    assert titles == {" ".join(d["title"].split()) for d in items}
    assert all("\ufffd" not in t for t in titles)


def _dies_on_poison(source, body, headers, url, now):
    """A reader whose process dies, as a parser crash in C would take it (module level: the
    pool's processes import it by name)."""
    if source.id.startswith("poison"):
        os._exit(70)
    return read_feed(source, body, headers, url, now)


def test_a_process_that_dies_fails_only_the_feed_that_killed_it():
    # one process, seven reads at once: the poisoned one kills it mid-queue
    pool = ParsePool(1, reader=_dies_on_poison)
    body = next(b for name, b, _ in fixture_feeds() if name == "bbc")
    headers = {"content-type": "application/xml"}
    sources = [Source(id=f"ok{i}", url=f"http://127.0.0.1/{i}.xml", title="x") for i in range(6)]
    sources.insert(2, Source(id="poison", url="http://127.0.0.1/p.xml", title="x"))
    try:
        with ThreadPoolExecutor(7) as threads:
            results = list(threads.map(lambda s: pool.read(s, body, headers, s.url, NOW), sources))
        # and the pool works on afterwards
        after = pool.read(sources[0], body, headers, sources[0].url, NOW)
    finally:
        pool.close()
    outcomes = {s.id: (r[1], r[2]) for s, r in zip(sources, results)}
    assert outcomes.pop("poison") == (Outcome.ERROR, CRASHED)
    assert set(outcomes.values()) == {(Outcome.OK, None)}
    assert all(len(r[0]) == 10 for s, r in zip(sources, results) if s.id != "poison")
    assert after[1] is Outcome.OK and len(after[0]) == 10


def _hangs_on_slow(source, body, headers, url, now):
    if source.id == "slow":
        time.sleep(600)
    return read_feed(source, body, headers, url, now)


def test_a_read_that_hangs_is_cut_off_and_its_process_replaced():
    pool = ParsePool(1, reader=_hangs_on_slow, timeout=1.0)
    body = next(b for name, b, _ in fixture_feeds() if name == "bbc")
    slow = Source(id="slow", url="http://127.0.0.1/s.xml", title="x")
    fine = Source(id="fine", url="http://127.0.0.1/f.xml", title="x")
    try:
        hung = pool.read(slow, body, {}, slow.url, NOW)
        after = pool.read(fine, body, {}, fine.url, NOW)
    finally:
        pool.close()
    assert hung == ([], Outcome.ERROR, "reading the feed took longer than 1 s")
    assert after[1] is Outcome.OK and len(after[0]) == 10


def _pid(source, body, headers, url, now):
    return os.getpid()


# A worker with a one-process pool: it prints that process's pid (read through the pool).
_OWNER_WITH_A_POOL = (
    "import time\n"
    "from datetime import datetime, timezone\n"
    "from aggregator.parsepool import ParsePool\n"
    "from aggregator.types import Source\n"
    "from test_parsepool import _pid\n"
    "pool = ParsePool(1, reader=_pid)\n"
    "s = Source(id='x', url='http://127.0.0.1/x', title='x')\n"
    "print(pool.read(s, b'', {}, s.url, datetime.now(timezone.utc)), flush=True)\n"
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
    # the worker finishes in-flight polls after Ctrl-C or SIGTERM: their reads still need
    # the pool, which gets the same signal from the terminal or the service manager
    import signal

    pool = ParsePool(1, reader=_pid)
    s = Source(id="x", url="http://127.0.0.1/x", title="x")
    try:
        pid = pool.read(s, b"", {}, s.url, NOW)
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.5)
        assert pool.read(s, b"", {}, s.url, NOW) == pid
    finally:
        pool.close()
