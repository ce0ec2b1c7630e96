"""worker.py as a real process: kill -9 mid-poll, restart, hot reload, SIGTERM."""
from __future__ import annotations

import hashlib
import json
import re
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from aggregator.keys import Keys
from aggregator.normalize import clean_text
from aggregator.store import Store
from feedserver import Fault, Feed, FeedServer, ant_items
from httptest import wait_until

ROOT = Path(__file__).resolve().parents[1]
OUTLETS = ["skynews", "alarabia", "france24", "BBC", "CNN"]


@pytest.fixture
def server():
    s = FeedServer().start()
    for outlet in OUTLETS:
        s.feeds[f"/{outlet.lower()}.xml"] = Feed(outlet, ant_items(outlet))
    yield s
    s.stop()


def feeds_yaml(server, outlets, interval="1m") -> str:
    lines = ["defaults:", f"  interval: {interval}", "sources:"]
    for o in outlets:
        lines += [f"  - id: {o.lower()}", f"    url: {server.url('/' + o.lower() + '.xml')}",
                  f"    title: {o}", "    country: AE", "    tags: [test]"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def env(redis_url, keys, tmp_path):
    return os.environ | {
        "REDIS_URL": redis_url, "AGG_KEY_PREFIX": keys.prefix,
        "AGG_FEEDS": str(tmp_path / "feeds.yaml"), "AGG_ALLOW_PRIVATE_NETWORKS": "1",
        "AGG_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1",
        # the pool and the grouping process, whatever this machine's cores
        "AGG_PARSE_PROCESSES": "2", "AGG_GROUPING_PROCESS": "1",
    }


def start(args, env, **kw):
    return subprocess.Popen([sys.executable, str(ROOT / "worker.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)




def stored_ids(redis_client, keys: Keys) -> list[str]:
    return redis_client.zrange(keys.timeline, 0, -1)


def test_once_polls_every_source_and_reports(server, env, redis_client, keys, tmp_path):
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, OUTLETS), encoding="utf-8")
    server.feeds["/cnn.xml"].faults.append(Fault(500))
    proc = start(["--once"], env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 6 and lines[-1].startswith("4/5 sources ok")
    assert any(line.startswith("cnn") and "http-5xx 500" in line for line in lines)
    assert len(stored_ids(redis_client, keys)) == 64


def test_once_exits_nonzero_only_when_every_source_failed(server, env):
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
    server.feeds["/bbc.xml"].faults.append(Fault(503))
    proc = start(["--once"], env)
    proc.communicate(timeout=60)
    assert proc.returncode == 1


def test_kill_9_mid_poll_then_restart_loses_and_duplicates_nothing(server, env, redis_client,
                                                                   keys):
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, OUTLETS), encoding="utf-8")
    expected = {o: len(ant_items(o)) for o in OUTLETS}
    partial = []
    for kill_after in (0.3, 0.8, 1.5):
        for o in OUTLETS:  # slow responses keep polls in flight when the kill lands
            server.feeds[f"/{o.lower()}.xml"].faults.append(Fault(200, delay=0.4))
        proc = start(["--once"], env)
        assert wait_until(lambda: len(server.requests) > 0)
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        ids = stored_ids(redis_client, keys)
        assert len(ids) == len(set(ids)) <= sum(expected.values())
        partial.append(len(ids))
    assert partial[0] < sum(expected.values()), "the first kill should land mid-run"
    proc = start(["--once"], env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    store = Store(redis_client, keys)
    ids = stored_ids(redis_client, keys)
    assert len(ids) == len(set(ids)) == sum(expected.values())
    for o, n in expected.items():
        assert store.count_items(o.lower()) == n
    items = store.get_items(ids)
    assert len(items) == len(ids)
    assert {it.title for it in items} == {clean_text(d["title"]) for o in OUTLETS
                                          for d in ant_items(o)}
    assert redis_client.zcard(keys.group_pending) == 0


def test_hot_reload_keeps_last_good_config_and_restart_resumes(server, env, redis_client, keys):
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
    proc = start([], env)
    try:
        assert wait_until(lambda: server.hits("/bbc.xml"), timeout=30), proc.stderr
        # An invalid edit: interval below the 1-minute minimum on line 2.
        feeds.write_text(feeds_yaml(server, ["BBC", "CNN"], interval="5s"), encoding="utf-8")
        time.sleep(7)
        assert proc.poll() is None
        assert not server.hits("/cnn.xml")
        # A valid edit: CNN starts, BBC keeps its schedule.
        feeds.write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
        assert wait_until(lambda: server.hits("/cnn.xml"), timeout=20)
        assert len(server.hits("/bbc.xml")) == 1
        # Removing BBC stops it.
        feeds.write_text(feeds_yaml(server, ["CNN"]), encoding="utf-8")
        assert wait_until(lambda: redis_client.zscore(keys.schedule, "bbc") is None, timeout=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert err.rstrip().endswith("worker stopped"), err[-300:]  # the log says it is done
    assert f"{feeds}:2:" in err and "interval" in err
    # CNN moved up when BBC went: a new rank, nothing to reschedule or report
    assert "source cnn started" in err and "source cnn changed" not in err
    # Restart: CNN's next poll is stored ~1 minute ahead, so it is not polled again now.
    cnn_hits = len(server.hits("/cnn.xml"))
    proc = start([], env)
    try:
        time.sleep(6)
        assert proc.poll() is None
        assert len(server.hits("/cnn.xml")) == cnn_hits
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_stats_json_reports_items_stories_and_every_source(server, env, redis_client, keys):
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
    server.feeds["/cnn.xml"].faults.append(Fault(503, {"Retry-After": "120"}))
    once = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--once"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True, timeout=60)
    # the failure is told once: its report line, not a log warning besides
    told = [line for line in (once.stdout + once.stderr).splitlines() if "503" in line]
    assert len(told) == 1 and told[0].startswith("cnn "), told
    out = subprocess.run([sys.executable, "-m", "aggregator", "stats", "--json"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    stats = json.loads(out)
    n_bbc = len(ant_items("BBC"))
    assert stats["items"] == n_bbc
    assert 1 <= stats["stories"] <= n_bbc
    bbc, cnn = stats["sources"]["bbc"], stats["sources"]["cnn"]
    assert bbc["items"] == n_bbc and bbc["last_status"] == "ok" and bbc["last_http_status"] == 200
    assert bbc["errors"] == 0 and datetime.fromisoformat(bbc["next_poll"]).tzinfo is not None
    assert cnn["items"] == 0 and cnn["last_status"] == "http-5xx" and cnn["errors"] == 1
    assert cnn["last_http_status"] == 503 and cnn["retry_after_until"]


STATS_NOW = datetime.fromisoformat("2026-12-06T00:30:00+00:00")


@pytest.mark.parametrize("source,text", [
    ({"next_poll": "2026-12-06T00:34:10.5+00:00"}, "next in 4m 10s"),
    ({"next_poll": "2026-12-06T02:45:59+00:00"}, "next in 2h 15m"),
    ({"next_poll": "2026-12-06T00:30:00+00:00"}, "next: now"),
    ({"next_poll": "2026-12-06T00:29:53+00:00"}, "next: due (7s ago)"),
    ({"next_poll": None}, "next: at the worker's start"),
    ({"next_poll": None, "enabled": False}, "disabled in feeds.yaml"),
    ({"next_poll": None, "enabled": False, "disabled_reason": "410 Gone at 2026-12-06 00:10 UTC"},
     "stopped: 410 Gone at 2026-12-06 00:10 UTC"),
])
def test_stats_says_when_each_source_is_polled_next(source, text):
    from aggregator.__main__ import next_poll_text

    assert next_poll_text(source, STATS_NOW) == text


def test_operator_commands_say_redis_is_unreachable_without_a_traceback(tmp_path):
    env = os.environ | {"REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens on port 1
                        "AGG_FEEDS": str(tmp_path / "feeds.yaml")}
    (tmp_path / "feeds.yaml").write_text(
        "sources:\n  - id: bbc\n    url: https://feeds.bbci.co.uk/arabic/rss.xml\n"
        "    title: BBC\n", encoding="utf-8")
    for args in (["stats"], ["sources", "moved"], ["poll", "bbc", "--dry-run"]):
        r = subprocess.run([sys.executable, "-m", "aggregator", *args], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (args, r.stderr)
        assert "Redis unreachable" in r.stderr and "REDIS_URL=redis://127.0.0.1:1/0" in r.stderr


def test_stats_into_a_closed_pipe_ends_without_a_traceback(server, env):
    # `python -m aggregator stats | head -3`: head exits before stats has written it all
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "stats"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # long before it starts writing
    err = proc.communicate(timeout=60)[1].decode()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 1


def test_a_url_edited_while_its_old_url_is_being_polled_is_polled_next(server, env):
    # The edit's own poll job is skipped (one run per source at a time); the slow poll of the
    # old URL used to re-arm the source a whole interval later, at the old address's pace.
    server.feeds["/bbc.xml"].faults.append(Fault(200, delay=15))
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
    proc = start([], env)
    started = time.monotonic()
    try:
        time.sleep(7)  # the first poll starts within 6 s and lasts 15 s
        feeds.write_text(feeds_yaml(server, ["BBC"]).replace("/bbc.xml", "/cnn.xml"),
                         encoding="utf-8")
        assert wait_until(lambda: server.hits("/cnn.xml"), timeout=40)
        took = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert took < 35, f"the new URL was first polled {took:.0f} s after the start"


def test_a_second_worker_on_the_same_store_waits_for_the_first(server, env, redis_client,
                                                              keys):
    # Two workers would fetch every feed twice (a second `run` on another port did).
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
    first = start([], env)
    second = None
    try:
        assert wait_until(lambda: server.hits("/bbc.xml"), timeout=30)
        second = start([], env)
        time.sleep(8)
        assert second.poll() is None and len(server.hits("/bbc.xml")) == 1
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
        # it takes over at its next lock check (5 s), with BBC on its stored schedule
        assert wait_until(lambda: (redis_client.get(keys.worker_lock) or "").split(" ")[1:2]
                          == [str(second.pid)], timeout=20)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert "another worker is polling this store" in err
    assert "the other worker stopped; this one takes over" in err, err[-800:]
    assert "worker started with 1 sources" in err


def test_a_gone_source_added_again_by_a_live_edit_is_tried_again(server, env, redis_client,
                                                                  keys):
    # 410 disables a source "until it is removed from feeds.yaml or its URL fixed"; removing
    # it and adding it back (or disabling and enabling it) is the operator saying: try again.
    server.feeds["/cnn.xml"].faults.append(Fault(410))
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
    proc = start([], env)
    try:
        assert wait_until(lambda: redis_client.hget(keys.source_state("cnn"),
                                                    "disabled_reason"), timeout=30)
        feeds.write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
        # applied: the worker keeps each valid edit as the file's last good config
        kept = keys.config_good(hashlib.sha256(os.path.realpath(feeds).encode()).hexdigest()[:16])
        removed = hashlib.sha256(feeds.read_bytes()).hexdigest()
        assert wait_until(lambda: redis_client.hget(kept, "digest") == removed, timeout=20)
        feeds.write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
        assert wait_until(lambda: len(server.hits("/cnn.xml")) == 2, timeout=20)  # polled again
        assert wait_until(lambda: redis_client.hget(keys.source_state("cnn"), "last_status")
                          == "ok", timeout=20)
        assert not redis_client.hget(keys.source_state("cnn"), "disabled_reason")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "source cnn: its 410 Gone verdict is cleared" in err


def test_started_during_a_bad_edit_the_worker_runs_the_last_good_config(server, env,
                                                                         redis_client, keys):
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)

    # A first start has nothing to fall back on: the file's problems, no traceback, exit 2.
    good = feeds.read_text(encoding="utf-8")
    feeds.write_text(good.replace("    country: AE\n", "    contry: AE\n", 1), encoding="utf-8")
    first = run(str(ROOT / "worker.py"), "--once")
    assert first.returncode == 2 and "Traceback" not in first.stderr
    assert f"{feeds}:7: sources[0].contry: unknown key 'contry'" in first.stderr
    # the quick start's `run` refuses too, before it serves anything (it served a web
    # app with no worker behind it)
    quick = run("-m", "aggregator", "run", "--port", "0")
    assert quick.returncode == 2 and "Traceback" not in quick.stderr, quick.stderr
    assert f"{feeds}:7: sources[0].contry: unknown key 'contry'" in quick.stderr
    assert "serving on" not in quick.stderr
    assert not server.requests

    feeds.write_text(good, encoding="utf-8")
    assert run(str(ROOT / "worker.py"), "--once").returncode == 0  # keeps this file as good
    polled = len(server.requests)

    # The operator removes CNN and mistypes a key; the worker restarts meanwhile.
    feeds.write_text(feeds_yaml(server, ["BBC"]).replace("    tags:", "    tagz:"),
                     encoding="utf-8")
    again = run(str(ROOT / "worker.py"), "--once")
    assert again.returncode == 0, again.stderr
    assert f"{feeds}:8: sources[0].tagz: unknown key 'tagz'" in again.stderr
    assert "running the last good config (2 sources)" in again.stderr
    assert {r["path"] for r in server.requests[polled:]} == {"/bbc.xml", "/cnn.xml"}

    stats = json.loads(run("-m", "aggregator", "stats", "--json").stdout)
    assert set(stats["sources"]) == {"bbc", "cnn"}
    assert stats["config"]["valid"] is False and stats["config"]["rejected_since"]
    assert stats["config"]["problems"] == [
        f"{feeds}:8: sources[0].tagz: unknown key 'tagz' (did you mean 'tags'?)"]


def test_check_config_names_file_and_line(tmp_path):
    bad = tmp_path / "feeds.yaml"
    bad.write_text("sources:\n  - id: x\n    url: ftp://example.org/rss\n    title: x\n",
                   encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "aggregator", "check-config", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"{bad}:3: sources[0].url:" in proc.stderr
    ok = subprocess.run([sys.executable, "-m", "aggregator", "check-config",
                         str(ROOT / "feeds.yaml")], cwd=ROOT, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("OK:")


def test_sigterm_finishes_in_flight_polls(server, env, redis_client, keys):
    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, ["BBC"]), encoding="utf-8")
    server.feeds["/bbc.xml"].faults.append(Fault(200, delay=2.0))
    proc = start([], env)
    assert wait_until(lambda: len(server.requests) > 0, timeout=30)
    proc.send_signal(signal.SIGTERM)  # the slow response is still on its way
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert redis_client.zcard(keys.timeline) == len(ant_items("BBC"))


def test_run_serves_the_web_app_and_ingests(server, env, redis_client, keys):
    import html
    import re
    import urllib.request

    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, ["BBC", "CNN"]), encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "run", "--port", "0"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
                break
        assert port
        want = len(ant_items("BBC")) + len(ant_items("CNN"))
        assert wait_until(lambda: redis_client.zcard(keys.timeline) == want, timeout=30)
        assert wait_until(lambda: redis_client.zcard(keys.group_pending) == 0, timeout=30)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        assert 'dir="rtl"' in page
        assert clean_text(ant_items("BBC")[-1]["title"]) in html.unescape(page)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_once_respects_410_and_retry_after_and_a_url_edit_revives(server, env, tmp_path):
    feeds = Path(env["AGG_FEEDS"])
    feeds.write_text(feeds_yaml(server, ["BBC", "CNN", "skynews"]), encoding="utf-8")
    server.feeds["/cnn.xml"].faults.append(Fault(410))
    server.feeds["/skynews.xml"].faults.append(Fault(429, {"Retry-After": "3600"}))
    subprocess.run([sys.executable, str(ROOT / "worker.py"), "--once"], cwd=ROOT, env=env,
                   check=True, capture_output=True, timeout=60)
    hits = (len(server.hits("/cnn.xml")), len(server.hits("/skynews.xml")))
    out = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--once"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    assert (len(server.hits("/cnn.xml")), len(server.hits("/skynews.xml"))) == hits
    assert re.search(r"^cnn\s+skipped: 410 Gone", out, re.M)
    assert re.search(r"^skynews\s+skipped: Retry-After until", out, re.M)
    # The operator fixes CNN's URL: the 410 verdict belonged to the old one.
    server.feeds["/cnn2.xml"] = Feed("CNN", ant_items("CNN"))
    feeds.write_text(feeds.read_text().replace("/cnn.xml", "/cnn2.xml"), encoding="utf-8")
    out = subprocess.run([sys.executable, str(ROOT / "worker.py"), "--once"], cwd=ROOT,
                         env=env, check=True, capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"^cnn\s+ok 200\s+new\s+16", out, re.M), out


def test_once_reads_the_sources_states_once(server, env, redis_client, keys, monkeypatch):
    # run_once reads every state for its 410/Retry-After skips; the polls reuse that read
    import io

    from aggregator.runner import run_once
    from aggregator.settings import Settings

    Path(env["AGG_FEEDS"]).write_text(feeds_yaml(server, OUTLETS[:2]), encoding="utf-8")
    reads = []
    real = Store.load_states
    monkeypatch.setattr(Store, "load_states", lambda self, ids: reads.append(list(ids)) or real(self, ids))
    out = io.StringIO()
    assert run_once(Settings.from_env(env), out=out) == 0
    assert reads == [["skynews", "alarabia"]]
    assert "2/2 sources ok" in out.getvalue() and len(stored_ids(redis_client, keys)) > 0


@pytest.mark.parametrize("holder, gone", [
    (f"{socket.gethostname()} {os.getpid()} 0000aaaa", True),  # our pid, an older token
    (f"{socket.gethostname()} 1 0000aaaa", False),  # alive (init)
    (f"{socket.gethostname()} 999999999 0000aaaa", True),  # no such process
    ("another-host 999999999 0000aaaa", False),  # cannot tell: wait for its TTL
    ("garbage", False),
])
def test_a_lock_holder_is_gone_only_when_this_host_can_tell(holder, gone):
    from aggregator.runner import _gone_here

    assert _gone_here(holder) is gone
