"""Alerts: a real webhook receiver on 127.0.0.1; sources failing past the threshold, 410s,
our own outage (every source failing on the network at once) and recoveries, each alerted
once; the SSRF guard; a slow webhook never blocks the poll path."""
from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aggregator.alerts import (Alerter, Monitor, decide, is_our_outage, outage_window,
                               parse_after)
from aggregator.config import load_config_text
from aggregator.fetch import Fetcher
from aggregator.metrics import Recorder
from aggregator.schedule import after_poll, backoff_delay, during_outage
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.types import FetchResult, Outcome, Source, SourceState
from aggregator.update import Pipeline, update_source
from feedserver import Fault, Feed, FeedServer, ant_items
from ops_fixtures import closed_port

UTC = timezone.utc
T0 = datetime(2018, 3, 12, 18, 0, tzinfo=UTC)
PRIVATE_OK = Settings(allow_private_networks=True, fetch_timeout=3.0)


class Receiver:
    """A webhook endpoint: records every POSTed JSON body; `delay` stalls the answer."""

    def __init__(self, delay: float = 0.0, status: int = 204):
        self.bodies: list[dict] = []
        self.delay = delay
        self.status = status
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(rec.delay)
                rec.bodies.append(json.loads(body))
                self.send_response(rec.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/hook"

    def events(self) -> list[str]:
        return [b["event"] for b in self.bodies]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def make_monitor(redis_client, keys, webhook, settings=PRIVATE_OK, after=timedelta(hours=1)):
    rec = Recorder(redis_client, keys)
    return Monitor(rec, Alerter(redis_client, keys, settings, webhook=webhook, after=after,
                                metrics=rec))


# --- pure decisions ---------------------------------------------------------------------------

@pytest.mark.parametrize("recent, window, expected", [
    (["dns a.com s1", "connect b.com s2", "timeout c.com s3"], 3, True),
    (["dns a.com s1", "connect b.com s2"], 3, False),  # not enough polls yet
    (["dns a.com s1", "dns a.com s2", "dns b.com s3"], 3, False),  # two hosts: theirs
    (["dns a.com s1", "http-5xx b.com s2", "dns c.com s3"], 3, False),  # b answered
    (["dns a.com s1", "connect b.com s2", "timeout c.com s3", "ok d.com s4"], 3, True),
    (["dns a.com s1", "connect b.com s2", "timeout c.com s3", "ok d.com s4"], 4, False),
    (["tls a.com s1", "tls b.com s2", "tls c.com s3"], 3, False),  # TLS means we connected
    ([], 3, False),
])
def test_is_our_outage(recent, window, expected):
    assert is_our_outage(recent, window) is expected


def test_outage_window():
    assert [outage_window(n) for n in (0, 1, 3, 5, 10, 500)] == [3, 3, 3, 5, 10, 10]


def test_parse_after():
    assert parse_after(None) == timedelta(hours=1)
    assert parse_after("30m") == timedelta(minutes=30)
    assert parse_after("1h30m") == timedelta(minutes=90)
    with pytest.raises(ValueError):
        parse_after("soon")


def test_during_outage_keeps_the_sources_streak_and_schedule():
    src = Source(id="s", url="https://a.example/f", title="s", interval=600)
    rng = random.Random(3)
    net = FetchResult(Outcome.DNS, src.url, src.url, error="no such host")
    healthy = SourceState(polls=4, errors=1)
    failed = after_poll(src, healthy, net, T0, rng)
    assert failed.consecutive_failures == 1 and failed.failing_since == T0  # normal path
    kept = during_outage(src, healthy, failed, T0, rng)
    assert kept.consecutive_failures == 0 and kept.failing_since is None and kept.errors == 1
    assert kept.last_status == "dns" and kept.polls == 5 and kept.last_poll == T0
    assert timedelta(seconds=540) <= kept.next_poll - T0 <= timedelta(seconds=660)
    # A source already failing before our outage keeps its own backoff, not a longer one.
    sick = SourceState(consecutive_failures=3, failing_since=T0 - timedelta(hours=2), errors=3)
    failed = after_poll(src, sick, net, T0, rng)
    kept = during_outage(src, sick, failed, T0, rng)
    assert kept.consecutive_failures == 3 and kept.failing_since == sick.failing_since
    assert kept.next_poll - T0 <= timedelta(seconds=backoff_delay(600, 3) * 1.1)
    assert failed.next_poll - T0 >= timedelta(seconds=backoff_delay(600, 4) * 0.9)


def test_decide():
    a = Source(id="a", url="https://a.example/f", title="a")
    b = Source(id="b", url="https://b.example/f", title="b")
    c = Source(id="c", url="https://c.example/f", title="c")
    off = Source(id="off", url="https://d.example/f", title="off", enabled=False)
    now = T0 + timedelta(hours=2)
    failing = SourceState(last_status="http-5xx", last_poll=now, consecutive_failures=5,
                          failing_since=T0, last_http_status=503)
    states = {"a": failing,
              "b": SourceState(last_status="ok", last_poll=now),
              "c": SourceState(last_status="gone", disabled_reason="410 Gone at …",
                               failing_since=now, consecutive_failures=1)}
    d = decide([a, b, c, off], states, {"source:b", "source:off"}, now, timedelta(hours=1),
               outage=False)
    assert [k for k, _ in d.open] == ["source:a", "source:c"]
    assert d.open[0][1]["event"] == "source_failing" and d.open[0][1]["failing_for_s"] == 7200
    assert d.open[1][1]["event"] == "source_disabled"
    assert [k for k, _ in d.close] == ["source:b"] and d.forget == ("source:off",)
    # Below the threshold, during our outage, or not polled since it ended: nobody is blamed.
    assert not decide([a], states, set(), now, timedelta(hours=3), False).open
    assert not decide([a], states, set(), now, timedelta(hours=1), True).open
    assert not decide([a], states, set(), now, timedelta(hours=1), False,
                      quiet_before=now).open
    # Already open: not again.
    assert not decide([a], states, {"source:a"}, now, timedelta(hours=1), False).open


# --- the webhook ------------------------------------------------------------------------------

def test_incident_is_alerted_once_and_recovered_once(redis_client, keys, receiver):
    rec = Recorder(redis_client, keys)
    al = Alerter(redis_client, keys, PRIVATE_OK, webhook=receiver.url, metrics=rec)
    payload = {"event": "source_failing", "text": "x failing", "at": T0.isoformat()}
    assert al.open("source:x", payload) is True
    assert al.open("source:x", payload) is False
    # Another process (another Alerter on the same Redis) does not repeat it either.
    other = Alerter(redis_client, keys, PRIVATE_OK, webhook=receiver.url)
    assert other.open("source:x", payload) is False
    assert al.resolve("source:x", {"event": "source_recovered", "text": "x ok"}) is True
    assert other.resolve("source:x", {"event": "source_recovered", "text": "x ok"}) is False
    assert wait_until(lambda: len(receiver.bodies) == 2)
    time.sleep(0.2)
    assert receiver.events() == ["source_failing", "source_recovered"]
    assert wait_until(lambda: redis_client.hget(keys.metrics_counters, "alerts_sent") == "2")
    al.close()


def test_webhook_obeys_the_ssrf_guard(redis_client, keys, receiver, caplog):
    rec = Recorder(redis_client, keys)
    al = Alerter(redis_client, keys, Settings(), webhook=receiver.url, metrics=rec)
    al.open("outage", {"event": "outage", "text": "down"})
    assert wait_until(lambda: redis_client.hget(keys.metrics_counters, "alerts_failed") == "1")
    assert receiver.bodies == []
    assert "non-public address" in caplog.text
    al.close()


def test_webhook_must_be_http(redis_client, keys, caplog):
    al = Alerter(redis_client, keys, PRIVATE_OK, webhook="file:///etc/passwd")
    assert al.webhook is None and "not an http(s) URL" in caplog.text


def test_a_stalled_webhook_never_blocks_and_times_out(redis_client, keys):
    slow = Receiver(delay=8.0)
    try:
        rec = Recorder(redis_client, keys)
        al = Alerter(redis_client, keys, PRIVATE_OK, webhook=slow.url, metrics=rec)
        t = time.monotonic()
        for i in range(3):
            al.open(f"source:s{i}", {"event": "source_failing", "text": f"s{i}"})
        assert time.monotonic() - t < 0.5
        # The first call gives up after 5 s (not the receiver's 8 s).
        assert wait_until(lambda: redis_client.hget(keys.metrics_counters, "alerts_failed")
                          == "1", timeout=7.5)
        assert time.monotonic() - t >= 4.5
    finally:
        slow.stop()


# --- through the poll path --------------------------------------------------------------------

def test_source_failing_past_the_threshold_alerts_once_then_recovers(redis_client, keys,
                                                                     receiver):
    server = FeedServer().start()
    try:
        server.feeds["/bbc.xml"] = Feed("BBC", ant_items("BBC"))
        server.feeds["/bbc.xml"].faults += [Fault(503)] * 4
        cfg = load_config_text(f"sources:\n  - id: bbc\n    url: {server.url('/bbc.xml')}\n"
                               "    title: BBC\n    interval: 10m\n")
        src = cfg.sources[0]
        store = Store(redis_client, keys)
        mon = make_monitor(redis_client, keys, receiver.url, after=timedelta(minutes=45))
        pipe = Pipeline(store=store, fetcher=Fetcher(PRIVATE_OK), monitor=mon)
        for minutes in (0, 10, 30):
            update_source(src, pipe, T0 + timedelta(minutes=minutes))
            mon.tick(store, [src], T0 + timedelta(minutes=minutes), force=True)
        assert receiver.bodies == [] and not redis_client.hgetall(keys.alerts_open)
        update_source(src, pipe, T0 + timedelta(minutes=70))
        for _ in range(3):
            mon.tick(store, [src], T0 + timedelta(minutes=71), force=True)
        assert wait_until(lambda: receiver.events() == ["source_failing"])
        alert = receiver.bodies[0]
        assert alert["source"] == "bbc" and alert["outcome"] == "http-5xx"
        assert alert["http_status"] == 503 and alert["failing_for_s"] == 71 * 60
        assert alert["failing_since"] == T0.isoformat(timespec="seconds")
        assert "bbc" in alert["text"]
        update_source(src, pipe, T0 + timedelta(minutes=150))  # the fault queue is empty now
        mon.tick(store, [src], T0 + timedelta(minutes=150), force=True)
        mon.tick(store, [src], T0 + timedelta(minutes=151), force=True)
        assert wait_until(lambda: receiver.events() == ["source_failing", "source_recovered"])
        time.sleep(0.2)
        assert len(receiver.bodies) == 2
        mon.close()
        pipe.fetcher.close()
    finally:
        server.stop()


def test_a_410_alerts_at_once(redis_client, keys, receiver):
    server = FeedServer().start()
    try:
        server.feeds["/f.xml"] = Feed("f", ant_items("CNN"), faults=[Fault(410)])
        src = load_config_text(f"sources:\n  - id: f\n    url: {server.url('/f.xml')}\n"
                               "    title: F\n").sources[0]
        store = Store(redis_client, keys)
        mon = make_monitor(redis_client, keys, receiver.url)
        pipe = Pipeline(store=store, fetcher=Fetcher(PRIVATE_OK), monitor=mon)
        update_source(src, pipe, T0)
        mon.tick(store, [src], T0, force=True)
        assert wait_until(lambda: receiver.events() == ["source_disabled"])
        assert "410" in receiver.bodies[0]["text"]
        mon.close()
    finally:
        server.stop()


def test_our_outage_is_one_alert_and_not_held_against_the_sources(redis_client, keys, receiver,
                                                                  caplog):
    """Four sources on four loopback hosts, nothing listening: every poll fails to connect,
    which is what our own network being down looks like. Then one of them comes back."""
    port = closed_port()
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    yaml = "defaults:\n  interval: 10m\nsources:\n" + "".join(
        f"  - id: s{i}\n    url: http://{h}:{port}/feed.xml\n    title: S{i}\n"
        for i, h in enumerate(hosts))
    sources = load_config_text(yaml).sources
    store = Store(redis_client, keys)
    mon = make_monitor(redis_client, keys, receiver.url)
    mon.enabled_sources = len(sources)
    pipe = Pipeline(store=store, fetcher=Fetcher(PRIVATE_OK), monitor=mon,
                    rng=random.Random(5))
    now = T0
    for s in sources:  # the first round reveals the outage
        update_source(s, pipe, now)
    assert mon.outage is True
    assert redis_client.hexists(keys.alerts_open, "outage")
    assert wait_until(lambda: receiver.events() == ["outage"])
    outage = receiver.bodies[0]
    assert outage["hosts"] == hosts and outage["outcomes"] == ["connect"]
    assert "our own network outage" in caplog.text
    # Three more hours of outage: polls go on at each source's interval, no backoff, no
    # per-source alerts, no second outage alert.
    for rnd in range(1, 19):
        now = T0 + timedelta(minutes=10 * rnd)
        for s in sources:
            update_source(s, pipe, now)
        mon.tick(store, sources, now, force=True)
    states = store.load_states([s.id for s in sources])
    for s in sources:
        st = states[s.id]
        assert st.last_status == "connect" and st.polls == 19
        assert st.consecutive_failures <= 1  # at most the poll that revealed the outage
        assert st.next_poll - now <= timedelta(seconds=660)
    time.sleep(0.3)
    assert receiver.events() == ["outage"]
    # Our network is back: the first HTTP answer ends the outage.
    back = FeedServer()
    back.httpd.server_close()
    from http.server import ThreadingHTTPServer as S

    back.httpd = S(("127.0.0.1", port), back.httpd.RequestHandlerClass)
    back.thread = threading.Thread(target=back.httpd.serve_forever, daemon=True)
    back.feeds["/feed.xml"] = Feed("S0", ant_items("BBC"))
    back.start()
    try:
        now += timedelta(minutes=10)
        report = update_source(sources[0], pipe, now)
        assert report.outcome is Outcome.OK
        assert mon.outage is False and not redis_client.hexists(keys.alerts_open, "outage")
        assert wait_until(lambda: receiver.events() == ["outage", "outage_recovered"])
        # The sources still down are judged on polls after our recovery only.
        mon.tick(store, sources, now + timedelta(minutes=1), force=True)
        time.sleep(0.3)
        assert receiver.events() == ["outage", "outage_recovered"]
    finally:
        back.stop()
        mon.close()
        pipe.fetcher.close()


# --- the worker process -------------------------------------------------------------------------

def start_worker(env):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen([sys.executable, str(root / "worker.py")], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_worker(proc) -> str:
    import signal

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


@pytest.fixture
def worker_env(redis_url, keys, tmp_path, receiver):
    import os

    return os.environ | {
        "REDIS_URL": redis_url, "AGG_KEY_PREFIX": keys.prefix,
        "AGG_FEEDS": str(tmp_path / "feeds.yaml"), "AGG_ALLOW_PRIVATE_NETWORKS": "1",
        "AGG_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1",
        "AGG_ALERT_WEBHOOK": receiver.url, "AGG_ALERT_AFTER": "3s",
    }


def test_worker_alerts_a_source_failing_past_the_threshold(worker_env, receiver, tmp_path):
    server = FeedServer().start()
    try:
        server.feeds["/cnn.xml"] = Feed("CNN", ant_items("CNN"), faults=[Fault(502)] * 50)
        server.feeds["/bbc.xml"] = Feed("BBC", ant_items("BBC"))
        (tmp_path / "feeds.yaml").write_text(
            "defaults:\n  interval: 1m\nsources:\n"
            f"  - id: cnn\n    url: {server.url('/cnn.xml')}\n    title: CNN\n"
            f"  - id: bbc\n    url: {server.url('/bbc.xml')}\n    title: BBC\n",
            encoding="utf-8")
        proc = start_worker(worker_env)
        try:
            assert wait_until(lambda: receiver.events() == ["source_failing"], timeout=30), \
                receiver.bodies
        finally:
            err = stop_worker(proc)
        alert = receiver.bodies[0]
        assert alert["source"] == "cnn" and alert["http_status"] == 502
        assert alert["failing_for_s"] >= 3
        assert "ALERT source cnn has been failing" in err
    finally:
        server.stop()


def test_worker_treats_every_source_failing_at_once_as_our_outage(worker_env, receiver, tmp_path,
                                                                  redis_client, keys):
    # The first polls spread over ~6 s: a 3 s threshold would blame the first source before
    # the last one reveals the outage.
    worker_env = worker_env | {"AGG_ALERT_AFTER": "1h"}
    port = closed_port()
    (tmp_path / "feeds.yaml").write_text(
        "defaults:\n  interval: 1m\nsources:\n" + "".join(
            f"  - id: s{i}\n    url: http://127.0.0.{i + 1}:{port}/feed.xml\n    title: S{i}\n"
            for i in range(3)), encoding="utf-8")
    proc = start_worker(worker_env)
    try:
        assert wait_until(lambda: receiver.events() == ["outage"], timeout=30), receiver.bodies
        time.sleep(6)  # a few housekeeping sweeps: no per-source alert while it lasts
    finally:
        err = stop_worker(proc)
    assert receiver.events() == ["outage"]
    assert "ALERT every source is failing at once" in err
    assert redis_client.hexists(keys.alerts_open, "outage")
    states = Store(redis_client, keys).load_states(["s0", "s1", "s2"])
    assert all(st.last_status == "connect" and st.consecutive_failures <= 1
               for st in states.values())
