"""Durability of the real worker: kill -9 mid-poll and mid-grouping-batch, Redis stopped
and restarted under a running worker and web app; afterwards the stored items are
compared with the expected set (every item once, every item grouped once).

The Redis tests start their own Debian /usr/bin/redis-server (AOF on, appendfsync
always, in a temp dir, on a free loopback port): stopping the shared test Redis would
break every other test.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import redis as redis_lib
from werkzeug.serving import make_server

from aggregator.keys import Keys
from aggregator.normalize import clean_text
from aggregator.store import Store
from hostile_server import (
    HostileServer, rss, start_worker, wait_until, worker_env, feeds_yaml,
)

REDIS_SERVER = "/usr/bin/redis-server"
DATA = Path(__file__).parent / "data"


def corpus() -> list[dict]:
    """The real ANT items of tests/data (attribution there), one per URL, oldest first."""
    rows, seen = [], set()
    for name in ("ant_sample.jsonl", "ant_pages_items.jsonl", "syndicate_ant_items.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if r["url"] not in seen:
                seen.add(r["url"])
                rows.append(r)
    return sorted(rows, key=lambda r: r["time_utc"])


def clone_feed(rows: list[dict], clone: int) -> bytes:
    """The rows as one RSS feed whose GUIDs and links are unique to the clone."""
    return rss([{"title": r["title"], "link": r["url"].replace("://", f"://c{clone}.", 1),
                 "guid": f"c{clone}-{r['docno']}", "date": r["time"],
                 "description": r.get("abstract") or ""} for r in rows])


def expected_titles(rows) -> set[str]:
    return {clean_text(r["title"]) for r in rows}


def check_integrity(r: redis_lib.Redis, keys: Keys, want: int, titles: set[str] | None = None):
    """Every item stored once, indexed, and (once grouping drained) in exactly one story."""
    ids = r.zrange(keys.timeline, 0, -1)
    assert len(ids) == len(set(ids)) == want, (len(ids), want)
    assert r.zcard(keys.first_seen) == want
    store = Store(r, keys)
    items = store.get_items(ids)
    assert len(items) == want  # no index entry without its item
    if titles is not None:
        assert {it.title for it in items} == titles
    assert r.zcard(keys.group_pending) == 0
    assigned = r.hgetall(keys.group_is)
    assert set(assigned) == set(ids)  # every item grouped
    members = {}
    for sid in set(assigned.values()):
        for item_id in r.zrange(keys.group_story_items(sid), 0, -1):
            assert item_id not in members, f"{item_id} in two stories"
            members[item_id] = sid
    assert members == assigned


# --------------------------------------------------------------------------- kill -9

@pytest.fixture
def server():
    s = HostileServer(hosts=5).start()
    yield s
    s.stop()


def test_kill_9_during_polls_of_a_running_worker_loses_and_duplicates_nothing(
        server, redis_url, redis_client, keys, tmp_path):
    rows = corpus()
    chunks = [rows[i::8] for i in range(8)]
    urls = {f"f{i}": server.add(f"/f{i}.xml", "slow", clone_feed(chunk, 0), host=1 + i % 5,
                                delay=0.7)
            for i, chunk in enumerate(chunks)}
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    counts = []
    for kill_after in (1.5, 3.0, 4.5):
        for sid in urls:  # every source due now, as after an outage longer than its interval
            redis_client.hset(keys.source_state(sid), "next_poll", "")
        before = len(server.requests)
        proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(lambda: len(server.requests) > before, timeout=30)
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        ids = redis_client.zrange(keys.timeline, 0, -1)
        assert len(ids) == len(set(ids)) <= len(rows)
        counts.append(len(ids))
    assert counts[0] < len(rows), "the first kill should land mid-run"
    for sid in urls:
        redis_client.hset(keys.source_state(sid), "next_poll", "")
    proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: redis_client.zcard(keys.timeline) == len(rows)
                          and redis_client.zcard(keys.group_pending) == 0, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    check_integrity(redis_client, keys, len(rows), expected_titles(rows))


def big_backlog(server, n_clones: int = 16) -> dict[str, str]:
    """~2,000 items (the real ones, each clone with its own GUIDs and links) in 16 feeds:
    enough that grouping takes several batches of 500."""
    rows = corpus()
    return {f"c{k}": server.add(f"/c{k}.xml", "ok", clone_feed(rows, k), host=1 + k % 5)
            for k in range(1, n_clones + 1)}


def kill_mid_batch(env, redis_client, keys, n_items: int) -> int:
    """Start the worker and kill -9 it while it holds the grouping lock with items still
    pending; returns the pending count at the kill."""
    proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: redis_client.exists(keys.group_lock)
                          and redis_client.zcard(keys.group_pending) > 0, timeout=60, step=0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert redis_client.pttl(keys.group_lock) > 0, "killed mid-batch: the lock is left behind"
    return redis_client.zcard(keys.group_pending)


def test_kill_9_mid_grouping_batch_loses_and_duplicates_nothing(server, redis_url,
                                                                redis_client, keys, tmp_path):
    urls = big_backlog(server)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    n = 16 * len(corpus())
    pending = kill_mid_batch(env, redis_client, keys, n)
    assert 0 < pending
    # The dead worker's lock would keep every grouper out for up to 120 s (see the next
    # test); here it is removed by hand, as its expiry would, to check what the killed
    # batch left behind.
    redis_client.delete(keys.group_lock)
    proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: redis_client.zcard(keys.timeline) == n
                          and redis_client.zcard(keys.group_pending) == 0, timeout=90)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    check_integrity(redis_client, keys, n)


def test_restart_after_kill_9_mid_batch_groups_without_waiting_out_the_lock(
        server, redis_url, redis_client, keys, tmp_path):
    urls = big_backlog(server, n_clones=8)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml(urls), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    kill_mid_batch(env, redis_client, keys, 8 * len(corpus()))
    proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # GroupingLoop looks every 5 s; a batch of 500 takes well under a second
        drained = wait_until(lambda: redis_client.zcard(keys.group_pending) == 0, timeout=15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert drained, f"grouping stalled; lock TTL {redis_client.pttl(keys.group_lock)} ms"


def test_sigterm_with_a_poll_in_flight_exits(server, redis_url, redis_client, keys, tmp_path):
    """SIGTERM must finish in-flight polls, store them and exit. The poll here ends after
    shutdown began: its job re-arms itself (Worker._schedule → add_job) while
    scheduler.shutdown(wait=True) waits for it (this hung forever before 0c106ae)."""
    url = server.add("/slow.xml", "slow", clone_feed(corpus()[:20], 0), delay=4.0)
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml({"slow": url}), encoding="utf-8")
    env = worker_env(redis_url, keys.prefix, feeds)
    proc = start_worker([], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: server.hits("/slow.xml"), timeout=30)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        exited = proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    assert redis_client.zcard(keys.timeline) == 20  # the in-flight poll was stored
    assert exited, "worker hung after SIGTERM"


# --------------------------------------------------------------------------- Redis outage

def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Debian's redis-server on a loopback port with AOF (appendfsync always) in `dir`."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "yes", "--daemonize", "no", "--logfile", "redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(port=self.port)
        assert wait_until(lambda: _pings(client), timeout=10), "redis-server did not start"
        return self

    def stop(self, sig=signal.SIGTERM) -> None:  # SIGTERM: redis-server flushes the AOF
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis_lib.RedisError:
        return False


@contextmanager
def web_app(env: dict):
    """The web app (create_app() as production builds it, from the environment) on
    127.0.0.1 in this process."""
    from web import create_app

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app = create_app()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=15) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


needs_redis_server = pytest.mark.skipif(not os.path.exists(REDIS_SERVER),
                                        reason="Debian redis-server absent")


class Outage:
    """A worker on its own Redis with 8 sources ingested, then 8 more added by a live edit
    (polled at once, each response 1.5 s late) and Redis stopped while those polls are in
    flight; `restart()` brings Redis back on the same port and data (AOF)."""

    def __init__(self, server, tmp_path):
        rows = corpus()
        self.rows = rows
        self.first, self.later = rows[: len(rows) // 2], rows[len(rows) // 2:]
        self.urls = {f"f{i}": server.add(f"/f{i}.xml", "slow", clone_feed(self.first[i::8], 0),
                                         host=1 + i % 5, delay=1.5) for i in range(8)}
        self.more = {f"g{i}": server.add(f"/g{i}.xml", "slow", clone_feed(self.later[i::8], 0),
                                         host=1 + i % 5, delay=1.5) for i in range(8)}
        self.server = server
        self.feeds = tmp_path / "feeds.yaml"
        self.feeds.write_text(feeds_yaml(self.urls), encoding="utf-8")
        rdir = tmp_path / "redis"
        rdir.mkdir()
        self.redis = RedisServer(rdir).start()
        self.keys = Keys("dur")
        self.env = worker_env(self.redis.url, self.keys.prefix, self.feeds)
        self.client = redis_lib.Redis.from_url(self.redis.url, decode_responses=True)
        self.log = open(tmp_path / "worker.log", "w+")
        self.proc = self.start_worker()

    def start_worker(self):
        return start_worker([], self.env, stdout=self.log, stderr=self.log)

    def first_round(self) -> None:
        assert wait_until(lambda: self.client.zcard(self.keys.timeline) == len(self.first)
                          and self.client.zcard(self.keys.group_pending) == 0, timeout=60)

    def stop_redis_mid_polls(self) -> None:
        self.feeds.write_text(feeds_yaml(self.urls | self.more), encoding="utf-8")
        assert wait_until(lambda: sum(bool(self.server.hits(f"/g{i}.xml")) for i in range(8))
                          >= 4, timeout=30)
        self.redis.stop()

    def all_stored(self) -> bool:
        return (self.client.zcard(self.keys.timeline) == len(self.rows)
                and self.client.zcard(self.keys.group_pending) == 0)

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.redis.stop()
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        return text


@needs_redis_server
def test_redis_stopped_and_restarted_under_a_running_worker_and_web_app(server, tmp_path):
    """While Redis is down the web app serves the feed bytes it last rendered and answers
    pages with 503, the worker stays up (no crash loop); once Redis is back (same AOF) every
    item is stored and grouped exactly once. The worker is restarted after Redis returns
    so this test does not wait out its retry ladder (see the next test)."""
    o = Outage(server, tmp_path)
    try:
        with web_app({k: o.env[k] for k in ("REDIS_URL", "AGG_KEY_PREFIX", "AGG_FEEDS")}) as web:
            o.first_round()
            status, _, atom_before = get(web + "/feeds/all.atom")
            assert status == 200
            assert get(web + "/")[0] == 200
            o.stop_redis_mid_polls()

            status, headers, body = get(web + "/feeds/all.atom")
            assert (status, body) == (200, atom_before)  # the last rendered bytes
            assert get(web + "/")[0] == 503
            assert get(web + "/healthz")[0] == 503
            time.sleep(6)
            assert o.proc.poll() is None, "the worker exited while Redis was down"
            status, _, body = get(web + "/feeds/all.atom")
            assert (status, body) == (200, atom_before)

            o.redis.start()
            assert o.proc.poll() is None
            o.proc.send_signal(signal.SIGKILL)
            o.proc.wait(10)
            o.proc = o.start_worker()
            assert wait_until(o.all_stored, timeout=60)
            assert get(web + "/")[0] == 200
            status, _, body = get(web + "/feeds/all.json?limit=200")
            assert status == 200
            shown = {it["title"] for it in json.loads(body)["items"]}
            assert shown & expected_titles(o.later), "outputs moved on after the outage"
    finally:
        text = o.close()
    o.redis.start()
    try:
        check_integrity(o.client, o.keys, len(o.rows), expected_titles(o.rows))
    finally:
        o.redis.stop()
    assert "Traceback" not in text, text[-3000:]


@needs_redis_server
def test_worker_resumes_by_itself_soon_after_redis_returns(server, tmp_path):
    o = Outage(server, tmp_path)
    try:
        o.stop_redis_mid_polls()  # the first round of the first 8 sources may be in flight too
        time.sleep(6)
        assert o.proc.poll() is None
        o.redis.start()
        resumed = wait_until(o.all_stored, timeout=25)
    finally:
        text = o.close()
    assert "Traceback" not in text
    assert resumed, "not every source was stored within 25 s of Redis coming back"


def test_pages_503_says_when_to_retry(tmp_path):
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml({"x": "https://example.org/feed.xml"}), encoding="utf-8")
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "AGG_KEY_PREFIX": "none",
           "AGG_FEEDS": str(feeds)}
    with web_app(env) as web:
        status, headers, _ = get(web + "/")
    assert status == 503
    assert headers.get("Retry-After", "").isdigit()


# --- the embedded server: killed, or stalled --------------------------------------------------

def _embedded_env(tmp_path, feeds) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_") and k != "REDIS_URL"}
    env.update(AGG_DATA_DIR=str(tmp_path / "data"), AGG_FEEDS=str(feeds),
               AGG_ALLOW_PRIVATE_NETWORKS="1", PYTHONUNBUFFERED="1",
               AGG_PARSE_PROCESSES="0", AGG_GROUPING_PROCESS="0")
    return env


def test_a_worker_starts_its_embedded_redis_again_after_it_died(server, tmp_path):
    # Nothing else restarts it: before, every poll and page waited on a dead socket until
    # some other command happened to call ensure_server.
    from aggregator.embedded import stop_server

    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml({"c0": server.add("/c0.xml", "ok", clone_feed(corpus()[:10], 0))}),
                     encoding="utf-8")
    env = _embedded_env(tmp_path, feeds)
    data = tmp_path / "data"
    proc = start_worker([], env)
    try:
        sock = data / "redis.sock"
        client = lambda: redis_lib.Redis(unix_socket_path=str(sock), decode_responses=True)
        assert wait_until(lambda: sock.exists() and client().zcard("agg:tl") == 10, timeout=30)
        pid = int((data / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: (data / "redis.pid").exists()
                          and int((data / "redis.pid").read_text()) != pid
                          and client().ping(), timeout=30), "not started again"
        assert client().zcard("agg:tl") == 10  # its AOF brought the items back
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        stop_server(data)
    assert "was gone; started it again" in err


def test_a_stalled_embedded_redis_is_reported_never_doubled_and_pages_answer_fast(tmp_path):
    from aggregator.embedded import ensure_server, stop_server
    from aggregator.errors import StoreError

    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(feeds_yaml({"x": "https://example.org/feed.xml"}), encoding="utf-8")
    data = tmp_path / "data"
    ensure_server(data)
    pid = int((data / "redis.pid").read_text())
    env = {"AGG_DATA_DIR": str(data), "AGG_FEEDS": str(feeds), "REDIS_URL": ""}
    try:
        with web_app(env) as web:
            assert get(web + "/healthz")[0] in (200, 503)  # connected (no worker beating)
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(StoreError, match=f"pid {pid}.*not answering"):
                    ensure_server(data, timeout=2)  # alive: a second server would share its AOF
                started = time.monotonic()
                status, _, body = get(web + "/healthz")
                took = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
        assert status == 503 and json.loads(body)["redis"] is False
        assert took < 12, took  # a minute and more with the 30 s timeout and its retries
    finally:
        stop_server(data)
