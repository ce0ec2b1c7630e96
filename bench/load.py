"""Load run: the production web app (gunicorn, deploy/gunicorn.conf.py) under 64 keep-alive
connections for 60 s on 127.0.0.1 *while* the worker ingests 500 feeds from the newsroom
(`newsroom.py serve --clones 100 --speed 60`: every clone feed of the 5 outlets, a
simulated minute per second, so every poll finds new items). Reports requests, p50/p90/p99
and every error (socket errors, non-2xx/3xx, HTTP 5xx), the latency of each path (nginx's
log; not with --direct), and what the worker did meanwhile.

    python bench/load.py [--shared ../shared] [--duration 60] [--connections 64]
                         [--warmup 300] [--direct] [--json-only]

Everything runs on loopback ports chosen at start and is stopped at the end: the
newsroom, a Debian redis-server (AOF on, in a temp dir), `python worker.py`, gunicorn,
and, as deploy/README.md runs production, nginx (deploy/nginx.conf) serving the combined
feeds from files kept current by `python -m web.cache watch` (`--direct`: gunicorn alone);
and wrk (the load generator; `apt-get install wrk`). The request mix is weighted like
readers (timeline, story pages, the three combined feeds, per-source feeds, the embed
widget, /sources); story and source ids are taken from the running site after warm-up.
Exit status 1 if any request failed.

The whole run is bounded: start-up waits are capped, wrk runs for --duration, and every
process gets SIGTERM then SIGKILL.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
REDIS_SERVER = "/usr/bin/redis-server"
PREFIX = "load"

LUA = r"""
-- weighted request mix; ids filled in by bench/load.py
local paths = {PATHS}
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  i = id * 7919
  statuses = {}
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], {["Accept-Encoding"] = "gzip"})
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, '"' .. k .. '": ' .. v) end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("LATENCY_US p50=%d p90=%d p99=%d max=%d\n",
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  io.write(string.format("SUMMARY requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
"""


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_for(pred, timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise RuntimeError(f"{what}: not ready within {timeout:.0f}s")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"),
                    help="the shared directory holding tools/newsroom (default ../shared)")
    ap.add_argument("--duration", type=int, default=60, help="seconds of load")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--clones", type=int, default=100, help="newsroom clones (5 feeds each)")
    ap.add_argument("--warmup", type=int, default=300,
                    help="items stored before the load starts (pages have content)")
    ap.add_argument("--direct", action="store_true",
                    help="load gunicorn directly (default: the production stack of deploy/: "
                         "nginx with files from `python -m web.cache watch`, gunicorn behind)")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args(argv)
    newsroom = os.path.join(args.shared, "tools", "newsroom", "newsroom.py")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    for need in (newsroom, REDIS_SERVER, shutil.which("wrk"), shutil.which("gunicorn"),
                 None if args.direct else nginx_bin):
        if need is None and args.direct:
            continue
        if not need or not os.path.exists(need):
            print(f"missing: {need}", file=sys.stderr)
            return 2

    import redis

    tmp = tempfile.mkdtemp(prefix="bench-load-")
    os.chmod(tmp, 0o755)  # nginx workers (nobody, when started as root) read files here
    procs: list[subprocess.Popen] = []
    say = (lambda *a: None) if args.json_only else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        # the newsroom: 5 × clones feeds, a simulated minute per second
        nr = subprocess.Popen([sys.executable, newsroom, "serve", "--clones", str(args.clones),
                               "--speed", "60"], stdout=subprocess.PIPE,
                              stderr=open(os.path.join(tmp, "newsroom.log"), "w"), text=True)
        procs.append(nr)
        listing = json.loads(nr.stdout.readline())
        feeds = [f for f in listing["feeds"] if f["clone"]]
        with open(os.path.join(tmp, "feeds.yaml"), "w", encoding="utf-8") as f:
            f.write("defaults:\n  interval: 1m\nsources:\n")
            for feed in feeds:
                f.write(f"  - id: {feed['id'].lower().replace('/', '-')}\n"
                        f"    url: {json.dumps(feed['url'])}\n"
                        f"    title: {json.dumps(feed['title'], ensure_ascii=False)}\n"
                        f"    site: {json.dumps(feed['site'])}\n")
        say(f"newsroom: {len(feeds)} feeds at {listing['base_url']}")

        # Redis (AOF on), the worker, gunicorn
        rport = free_port()
        procs.append(subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(rport), "--dir", tmp,
             "--appendonly", "yes", "--save", "", "--daemonize", "no",
             "--logfile", "redis.log"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = redis.Redis(port=rport, decode_responses=True)
        wait_for(lambda: _ping(client), 10, "redis-server")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGG_")}
        env.update(REDIS_URL=f"redis://127.0.0.1:{rport}/0", AGG_KEY_PREFIX=PREFIX,
                   AGG_FEEDS=os.path.join(tmp, "feeds.yaml"), AGG_ALLOW_PRIVATE_NETWORKS="1",
                   AGG_DATA_DIR=os.path.join(tmp, "data"))
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "worker.py")], cwd=ROOT,
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(tmp, "worker.log"), "w")))
        wport, nport = free_port(), free_port()
        base = f"http://127.0.0.1:{wport if args.direct else nport}"
        env["AGG_PUBLIC_URL"] = base + "/"
        procs.append(subprocess.Popen(
            ["gunicorn", "-c", os.path.join(ROOT, "deploy", "gunicorn.conf.py"),
             "--log-level", "warning", "web:create_app()"], cwd=ROOT,
            env=dict(env, AGG_BIND=f"127.0.0.1:{wport}"), stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "gunicorn.log"), "w")))
        if not args.direct:  # deploy/README.md: nginx + the file writer in front of gunicorn
            public = os.path.join(tmp, "public")
            os.makedirs(public)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "web.cache", "watch", "--out", public], cwd=ROOT,
                env=env, stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(tmp, "watch.log"), "w")))
            sys.path.insert(0, os.path.join(ROOT, "bench"))
            from serve import nginx_config  # deploy/nginx.conf with our ports and root

            conf = nginx_config(tmp, free_port(), nport, wport, public, public,
                                access_log=os.path.join(tmp, "access.log"))
            check = subprocess.run([nginx_bin, "-t", "-q", "-c", conf, "-p", tmp],
                                   capture_output=True, text=True)
            if check.returncode:
                raise RuntimeError(f"nginx -t: {check.stderr}")
            procs.append(subprocess.Popen([nginx_bin, "-c", conf, "-p", tmp, "-g",
                                           "daemon off;"], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        tl = f"{PREFIX}:tl"
        wait_for(lambda: client.zcard(tl) >= args.warmup, 90, "warm-up ingest")
        wait_for(lambda: get(base + "/")[0] == 200, 30, "gunicorn")

        # the request mix, with ids from the running site
        _, page = get(base + "/")
        linked = sorted(set(re.findall(r'href="(/stories/[^"?#]+)"', page.decode())))
        # Stories the grouper has formed first: a report not grouped yet is linked by its
        # item id, which answers 301 once grouped (cheap, and a different mix each run).
        grouped = [p for p in linked if client.exists(f"{PREFIX}:group:story:{p[9:]}")]
        stories = (grouped + [p for p in linked if p not in grouped])[:20]
        sources = [f["id"].lower().replace("/", "-") for f in feeds[:: max(1, len(feeds) // 10)]]
        paths = (["/"] * 6 + stories[:10] + ["/feeds/all.atom", "/feeds/all.json",
                 "/feeds/all.rss"] * 3 + [f"/feeds/sources/{s}.atom" for s in sources[:5]]
                 + ["/embed/all", "/embed/all", "/sources", "/?before=" + "9" * 10])
        lua = os.path.join(tmp, "mix.lua")
        with open(lua, "w") as f:
            f.write(LUA.replace("{PATHS}", "{" + ", ".join(json.dumps(p) for p in paths) + "}"))
        probe = {}
        for path in dict.fromkeys(paths):  # one request each, unloaded: what a path costs
            t = time.monotonic()
            status, _ = get(base + path, timeout=30)
            probe[path] = (status, round((time.monotonic() - t) * 1000, 1))
        say("single requests before the load (status, ms): " + json.dumps(probe, ensure_ascii=False))
        polls0 = _polls(client, feeds)
        items0 = client.zcard(tl)
        say(f"load: {args.connections} connections, {args.duration}s, {len(paths)} paths "
            f"({len(stories)} stories); {items0} items stored so far")

        access_log = os.path.join(tmp, "access.log")
        log_offset = _log_size(access_log)
        load0 = [round(x, 2) for x in os.getloadavg()]
        t0 = time.monotonic()
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s",
                              "--timeout", "10s", "-s", lua, base], capture_output=True,
                             text=True, timeout=args.duration + 60).stdout
        wall = time.monotonic() - t0
        items1 = client.zcard(tl)
        polls1 = _polls(client, feeds)
        pending = client.zcard(f"{PREFIX}:group:pending")
        workers_alive = all(p.poll() is None for p in procs)

        statuses = json.loads(re.search(r"STATUSES (\{.*\})", out).group(1))
        lat = dict(re.findall(r"(p50|p90|p99|max)=(\d+)", out))
        by_path = _by_path(access_log, log_offset, paths)
        summ = dict(re.findall(r"(\w+)=(\d+)", re.search(r"SUMMARY (.*)", out).group(1)))
        socket_errors = sum(int(summ[k]) for k in ("connect", "read", "write", "timeout"))
        bad_status = sum(v for k, v in statuses.items() if not 200 <= int(k) < 400)
        result = {
            "target": "gunicorn" if args.direct else "nginx+watch+gunicorn",
            "loadavg_before_after": [load0, [round(x, 2) for x in os.getloadavg()]],
            "connections": args.connections, "duration_s": round(wall, 1),
            "requests": int(summ["requests"]),
            "rps": round(int(summ["requests"]) / (int(summ["duration_us"]) / 1e6), 1),
            "p50_ms": int(lat["p50"]) / 1000, "p90_ms": int(lat["p90"]) / 1000,
            "p99_ms": int(lat["p99"]) / 1000, "max_ms": int(lat["max"]) / 1000,
            "statuses": statuses, "socket_errors": socket_errors,
            "socket_errors_by_kind": {k: int(summ[k]) for k in ("connect", "read", "write",
                                                                "timeout")},
            "non_2xx_3xx": bad_status, "errors": socket_errors + bad_status,
            "feeds": len(feeds), "polls_during_load": polls1 - polls0,
            "items_ingested_during_load": items1 - items0, "items_stored": items1,
            "grouping_pending_at_end": pending, "processes_alive": workers_alive,
            "single_request_ms": {p: v[1] for p, v in probe.items()},
            # nginx's $request_time per path during the load, slowest p99 first
            "by_path_ms": by_path,
        }
        if not args.json_only:
            print(f"requests {result['requests']} in {result['duration_s']}s "
                  f"({result['rps']} req/s), p50 {result['p50_ms']} ms, "
                  f"p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms, "
                  f"max {result['max_ms']} ms", file=sys.stderr)
            print(f"errors {result['errors']} (socket {socket_errors}, non-2xx/3xx "
                  f"{bad_status}); statuses {statuses}", file=sys.stderr)
            for path, v in list(by_path.items())[:8]:
                print(f"  {path}: n {v['n']}, p50 {v['p50']} ms, p99 {v['p99']} ms, "
                      f"max {v['max']} ms, statuses {v['statuses']}", file=sys.stderr)
            print(f"worker meanwhile: {result['polls_during_load']} polls of {len(feeds)} "
                  f"feeds, {result['items_ingested_during_load']} new items "
                  f"({items1} stored), grouping backlog {pending}", file=sys.stderr)
        print(json.dumps(result))
        return 0 if result["errors"] == 0 and workers_alive else 1
    finally:
        stop(procs)
        if os.environ.get("AGG_BENCH_KEEP"):
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _log_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _by_path(log_path: str, offset: int, paths: list[str]) -> dict:
    """{path: {n, p50, p99, max (ms), statuses}} from the nginx timing log past `offset`
    (the load itself, not the requests before it), slowest p99 first. Empty with
    --direct (no nginx)."""
    times: dict[str, list[float]] = {}
    statuses: dict[str, dict[str, int]] = {}
    wanted = set(paths)
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[2] not in wanted:
            continue
        path = parts[2]
        times.setdefault(path, []).append(float(parts[0]) * 1000)
        statuses.setdefault(path, {}).setdefault(parts[1], 0)
        statuses[path][parts[1]] += 1

    def pct(xs, q):
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)

    out = {}
    for path, xs in times.items():
        xs.sort()
        out[path] = {"n": len(xs), "p50": pct(xs, 0.5), "p99": pct(xs, 0.99),
                     "max": round(xs[-1], 1), "statuses": statuses[path]}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["p99"]))


def _ping(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def _polls(client, feeds) -> int:
    with client.pipeline(transaction=False) as p:
        for f in feeds:
            p.hget(f"{PREFIX}:src:{f['id'].lower().replace('/', '-')}", "polls")
        return sum(int(v or 0) for v in p.execute())


if __name__ == "__main__":
    sys.exit(main())
