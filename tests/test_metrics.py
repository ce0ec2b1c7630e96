"""/metrics: counters written by the poll path (in this process and in a worker process)
are read back from Redis by the web app's collector; latency is a histogram of fixed
buckets; output-cache hits of every web process reach Redis."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from aggregator.metrics import LATENCY_BUCKETS, Recorder, bucket_of
from aggregator.runner import GroupingLoop, make_grouper
from aggregator.config import load_config
from aggregator.errors import StoreError
from aggregator.store import Store
from aggregator.types import Outcome, Source, SourceState
from ops_fixtures import closed_port, monitor_for, poll_fleet, start_server
from ops_fixtures import feeds_path  # noqa: F401 (fixture)
from aggregator.settings import Settings
from web import create_app

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token"


@pytest.fixture
def server():
    s = start_server()
    yield s
    s.stop()


def scrape(app) -> dict:
    """{(name, labels tuple): value} of one /metrics answer."""
    resp = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def make_app(redis_client, keys, feeds_path):
    return create_app({"TESTING": True, "REDIS_CLIENT": redis_client,
                       "AGG_KEY_PREFIX": keys.prefix, "AGG_FEEDS": str(feeds_path),
                       "AGG_STATUS_TOKEN": TOKEN})


def test_bucket_of():
    assert bucket_of(0.0) == "0.1" and bucket_of(0.1) == "0.1" and bucket_of(0.11) == "0.25"
    assert bucket_of(LATENCY_BUCKETS[-1]) == f"{LATENCY_BUCKETS[-1]:g}"
    assert bucket_of(LATENCY_BUCKETS[-1] + 1) == "+Inf"


def test_poll_counters_histogram_items_stories_and_gauges(server, redis_client, keys,
                                                          feeds_path):
    monitor = monitor_for(redis_client, keys, Settings(allow_private_networks=True))
    reports = poll_fleet(redis_client, keys, feeds_path, monitor)
    config = load_config(feeds_path)
    loop = GroupingLoop(make_grouper(Store(redis_client, keys), config.sources), monitor=monitor)
    loop.drain()
    m = scrape(make_app(redis_client, keys, feeds_path))

    def polls(outcome):
        return m[("agg_polls_total", (("outcome", outcome),))]

    assert polls("ok") == 3 and polls("http-5xx") == 3 and polls("gone") == 1
    assert polls("connect") == 1 and polls("timeout") == 0
    assert sum(v for (n, _), v in m.items() if n == "agg_polls_total") == 8
    assert m[("agg_fetch_latency_seconds_count", ())] == 8
    assert m[("agg_fetch_latency_seconds_bucket", (("le", "+Inf"),))] == 8
    cum = [m[("agg_fetch_latency_seconds_bucket", (("le", floatToGoString(b)),))]
           for b in LATENCY_BUCKETS]
    assert cum == sorted(cum) and cum[-1] == 8  # every local poll is under 40 s
    assert 0 < m[("agg_fetch_latency_seconds_sum", ())] < 8 * 5

    stored = redis_client.zcard(keys.timeline)
    assert stored == 48 == sum(r.new for r in reports.values())
    assert m[("agg_items_ingested_total", ())] == stored
    stories = redis_client.zcard(keys.group_story_timeline)
    assert stories > 0 and m[("agg_stories_formed_total", ())] == stories

    health = {dict(lbl)["health"]: v for (n, lbl), v in m.items() if n == "agg_sources"}
    assert health == {"ok": 3, "failing": 2, "disabled": 2, "new": 0}
    assert m[("agg_sources_failing", ())] == 2
    assert m[("agg_outage", ())] == 0 and m[("agg_redis_up", ())] == 1


def test_counters_from_a_worker_process_are_read_by_the_web_process(server, redis_client, keys,
                                                                     feeds_path, redis_url,
                                                                     tmp_path):
    env = os.environ | {"REDIS_URL": redis_url, "AGG_KEY_PREFIX": keys.prefix,
                        "AGG_FEEDS": str(feeds_path), "AGG_ALLOW_PRIVATE_NETWORKS": "1",
                        "AGG_DATA_DIR": str(tmp_path / "data")}
    env.pop("AGG_ALERT_WEBHOOK", None)
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--once"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    m = scrape(make_app(redis_client, keys, feeds_path))
    total = sum(v for (n, _), v in m.items() if n == "agg_polls_total")
    # 6 enabled sources, twice, counted across two processes, less the one that answered
    # 410 on the first run: --once leaves a disabled source alone.
    assert total == 11
    assert m[("agg_polls_total", (("outcome", "not-modified"),))] == 3
    assert m[("agg_items_ingested_total", ())] == redis_client.zcard(keys.timeline) >= 48, \
        redis_client.zcard(keys.timeline)
    assert m[("agg_stories_formed_total", ())] == redis_client.zcard(keys.group_story_timeline)


def test_output_cache_hits_reach_redis(server, redis_client, keys, feeds_path):
    poll_fleet(redis_client, keys, feeds_path)
    app = make_app(redis_client, keys, feeds_path)
    c = app.test_client()
    for _ in range(3):
        assert c.get("/feeds/all.rss").status_code == 200
    assert c.get("/feeds/sources/bbc.atom").status_code == 200
    m = scrape(app)  # the scrape pushes this process's counts first
    assert m[("agg_output_renders_total", ())] == 2
    assert m[("agg_output_cache_hits_total", ())] == 2
    # A second app (another gunicorn worker) adds to the same counters.
    other = make_app(redis_client, keys, feeds_path)
    assert other.test_client().get("/feeds/all.rss").status_code == 200
    m = scrape(other)
    assert m[("agg_output_renders_total", ())] == 3
    # Each process pushes only its own increments: the first app's are not counted twice.
    assert redis_client.hget(keys.metrics_counters, "cache_hits") == "2"


def test_redis_errors_are_held_then_counted(redis_client, keys):
    port = closed_port()
    down = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    rec = Recorder(down, keys)
    src = Source(id="x", url="https://example.org/feed", title="x")
    now = datetime.now(timezone.utc)
    rec.count("items_new", 2)  # held from an earlier poll
    counts = rec.poll_counts(src, Outcome.OK, 0.2)
    with pytest.raises(StoreError):  # Redis down: the poll fails, its own counts are lost…
        Store(down, keys).save_poll(src, [], SourceState(), now, also=counts)
    rec.redis_error()  # …and its catcher counts the error (runner.Worker._poll does)
    assert counts.recent == []
    assert rec.flush() is False
    rec.r = redis_client  # …Redis is back: the held counts arrive with the next poll
    counts = rec.poll_counts(src, Outcome.OK, 0.2)
    Store(redis_client, keys).save_poll(src, [], SourceState(), now, also=counts)
    assert counts.recent == ["ok example.org x"]
    counters = redis_client.hgetall(keys.metrics_counters)
    assert int(counters["redis_errors"]) == 2
    assert counters["items_new"] == "2"
    assert redis_client.hget(keys.metrics_polls, "ok") == "1"


def test_metrics_answer_when_redis_is_down(redis_client, keys, feeds_path):
    port = closed_port()
    down = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5,
                       decode_responses=True)
    app = create_app({"TESTING": True, "REDIS_CLIENT": down, "AGG_KEY_PREFIX": keys.prefix,
                      "AGG_FEEDS": str(feeds_path), "AGG_STATUS_TOKEN": TOKEN})
    resp = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    assert "agg_redis_up 0.0" in resp.get_data(as_text=True)


def test_page_cache_hits_reach_metrics(server, redis_client, keys, feeds_path):
    poll_fleet(redis_client, keys, feeds_path)
    app = make_app(redis_client, keys, feeds_path)
    c = app.test_client()
    for _ in range(3):
        assert c.get("/").status_code == 200
    m = scrape(app)
    assert m[("agg_page_renders_total", ())] == 1
    assert m[("agg_page_cache_hits_total", ())] == 2
    assert ("agg_output_renders_total", ()) not in m or m[("agg_output_renders_total", ())] == 0


def test_a_web_process_pushes_its_cache_hits_without_being_scraped(server, redis_client, keys,
                                                                     feeds_path):
    """A gunicorn worker that never gets the scrape still contributes its fast-path hits."""
    import time

    poll_fleet(redis_client, keys, feeds_path)
    app = make_app(redis_client, keys, feeds_path)
    c = app.test_client()
    for _ in range(4):
        assert c.get("/feeds/all.atom").status_code == 200
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and \
            redis_client.hget(keys.metrics_counters, "cache_hits") != "3":
        time.sleep(0.1)
    assert redis_client.hget(keys.metrics_counters, "cache_hits") == "3"
    assert redis_client.hget(keys.metrics_counters, "cache_renders") == "1"


# --- Redis errors met by page and feed views --------------------------------------------------

REDIS_SERVER = "/usr/bin/redis-server"


class OwnRedis:
    """Debian's redis-server on a fixed loopback port, stopped and started by the test."""

    def __init__(self, directory: Path, port: int):
        self.dir, self.port, self.proc = directory, port, None

    def start(self) -> "OwnRedis":
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.dir), "--save", "", "--appendonly", "yes", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                if probe.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="Debian redis-server absent")
def test_redis_errors_in_page_and_feed_views_are_counted(tmp_path, feeds_path, monkeypatch):
    from aggregator.keys import Keys

    port = closed_port()
    keys = Keys(f"m{os.getpid()}")
    own = OwnRedis(tmp_path, port)
    # 1. Redis down from the process's start: the count waits in the process (no recorder
    #    can exist without a connection) and arrives with the first scrape after Redis is back.
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
    app = create_app({"TESTING": True, "AGG_KEY_PREFIX": keys.prefix,
                      "AGG_FEEDS": str(feeds_path), "AGG_STATUS_TOKEN": TOKEN})
    assert app.test_client().get("/").status_code == 503
    own.start()
    try:
        assert scrape(app)[("agg_redis_errors_total", ())] == 1
        # 2. Redis stops under a running web process: a page's 503 (cached or not), and a
        #    feed answered from its last bytes, are counted; the scrape after the restart
        #    shows them (plus any failed flush of the counts meanwhile).
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One immediate retry (a reconnect after the restart), not redis-py's backoff.
        client = redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.5,
                             socket_timeout=2, retry=Retry(NoBackoff(), 1))
        app = create_app({"TESTING": True, "REDIS_CLIENT": client, "AGG_KEY_PREFIX": keys.prefix,
                          "AGG_FEEDS": str(feeds_path), "AGG_STATUS_TOKEN": TOKEN,
                          "AGG_VERSION_TTL": 0})  # no 0.2 s of trusting a version read
        c = app.test_client()
        assert c.get("/").status_code == 200
        assert c.get("/feeds/all.atom").status_code == 200
        before = scrape(app)[("agg_redis_errors_total", ())]
        own.stop()
        assert c.get("/").status_code == 503
        assert c.get("/stories/nope").status_code == 503
        assert c.get("/feeds/all.atom").status_code == 200
        own.start()
        assert scrape(app)[("agg_redis_errors_total", ())] >= before + 3
    finally:
        own.stop()


def test_a_web_app_started_while_redis_is_down_answers_its_admin_surfaces(keys, feeds_path):
    """A gunicorn restart during an outage: /metrics keeps its agg_redis_up 0 sample (a
    503 would be a failed scrape that drops it), /status says 503 as a page or as JSON."""
    from aggregator.settings import Settings

    down = Settings(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    app = create_app({"TESTING": True, "AGG_SETTINGS": down, "AGG_KEY_PREFIX": keys.prefix,
                      "AGG_FEEDS": str(feeds_path), "AGG_STATUS_TOKEN": TOKEN})
    c = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    resp = c.get("/metrics", headers=auth)
    assert resp.status_code == 200 and "agg_redis_up 0" in resp.get_data(as_text=True)
    page = c.get("/status", headers=auth | {"Accept": "text/html"})
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "تعذّر الوصول إلى قاعدة الأخبار" in page.get_data(as_text=True)
    as_json = c.get("/status.json", headers=auth)
    assert as_json.status_code == 503 and as_json.json["error"].startswith("store unavailable")
    assert as_json.headers["Retry-After"] == "30"
