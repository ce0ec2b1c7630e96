"""Serving benchmark: a hot /feeds/all.atom (200 and 304) under the production setup vs
the same bytes served by nginx from a plain file, measured with wrk on 127.0.0.1 in one
run, reported as ratios to nginx.

    python bench/serve.py [--duration 4] [--rounds 3] [--connections 32] [--json-only]

Targets (all on loopback, ephemeral ports, stopped at the end):
  nginx-file   plain nginx serving the bytes from a file            (the reference, 1.0)
  gunicorn     gunicorn -c deploy/gunicorn.conf.py, direct: the app's WSGI fast path
  flask-view   the same gunicorn setup without the fast path: a Flask view returning
               cached bytes (what the fast path saves)
  production   deploy/nginx.conf in front of gunicorn: pre-rendered file via try_files
  prod-dynamic the same nginx, a URL with a query string (proxied to gunicorn)
Data: the 403 ANT items of 2018-03-12/13 with the gold story labels (shared/data), or
tests/data/syndicate_ant_items.jsonl when shared/ is absent; stories from the gold labels
(tests/syndicate_ant.GoldGrouper) so the bytes do not depend on the grouping algorithm.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import closing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

FEED = "/feeds/all.atom"


# --- the app gunicorn runs: create_app() with the bench's grouper -------------------------

def bench_app():
    """gunicorn entry point ('bench.serve:bench_app()'): the production app factory, with
    stories from the gold labels of the rows file named by AGG_BENCH_ROWS."""
    from syndicate_ant import GoldGrouper, SOURCES, gold_stories, load_rows

    from web import create_app
    from web.extensions import services

    app = create_app({"AGG_SOURCES": tuple(SOURCES.values()),
                      "AGG_FAST_PATH": os.environ.get("AGG_BENCH_FAST_PATH", "1") == "1"})
    stories, topics = gold_stories(load_rows(os.environ["AGG_BENCH_ROWS"]))
    with app.app_context():
        services()._grouper = GoldGrouper(stories, topics)
    return app


# --- data -------------------------------------------------------------------------------

def _shared_data() -> str | None:
    for cand in (os.environ.get("AGG_SHARED_DATA"), os.path.join(ROOT, "..", "shared", "data"),
                 "/work/shared/data"):
        if cand and os.path.exists(os.path.join(cand, "gold", "dev_2018-03-12_13.jsonl")):
            return cand
    return None


def write_rows(path: str) -> int:
    data = _shared_data()
    if data is None:
        shutil.copy(os.path.join(ROOT, "tests", "data", "syndicate_ant_items.jsonl"), path)
        with open(path) as f:
            return sum(1 for _ in f)
    gold = {}
    with open(os.path.join(data, "gold", "dev_2018-03-12_13.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            gold[d["docno"]] = d
    n, seen = 0, set()
    with gzip.open(os.path.join(data, "ant", "items.jsonl.gz"), "rt") as f, \
            open(path, "w", encoding="utf-8") as out:
        for line in f:
            d = json.loads(line)
            g = gold.get(d["docno"])
            if g is None or d["url"] in seen:
                continue
            seen.add(d["url"])
            d.update(story=g["story"], topic=g["topic"])
            d.pop("text", None)
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    return n


# --- processes --------------------------------------------------------------------------

def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def nginx_config(tmp: str, port_file: int, port_prod: int, port_app: int, plain_dir: str,
                 public_dir: str, access_log: str | None = None,
                 public_url: str | None = None) -> str:
    """A main nginx.conf in tmp: the plain-file server, and deploy/nginx.conf verbatim but
    for its four marked values. `access_log`: a file getting one line per request,
    "<seconds> <status> <uri>" (bench/load.py's per-path latencies); default off.
    `public_url`: AGG_PUBLIC_URL without its slash (default this nginx's own address)."""
    with open(os.path.join(ROOT, "deploy", "nginx.conf")) as f:
        site = f.read()
    site, n1 = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{port_app};", site)
    site, n2 = re.subn(r"listen 80;", f"listen 127.0.0.1:{port_prod};", site)
    site, n3 = re.subn(r"root /var/lib/aggregator/public;", f"root {public_dir};", site)
    public_url = public_url or f"http://127.0.0.1:{port_prod}"
    site, n4 = re.subn(r'default "https://akhbar\.example";', f'default "{public_url}";', site)
    assert (n1, n2, n3, n4) == (1, 1, 1, 1), "deploy/nginx.conf markers changed"
    with open(os.path.join(tmp, "site.conf"), "w") as f:
        f.write(site)
    main = f"""
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    {f"log_format timing '$request_time $status $request_uri'; access_log {access_log} timing;"
     if access_log else "access_log off;"}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    # The reference: nginx serving the same bytes from a file, nothing else.
    server {{
        listen 127.0.0.1:{port_file};
        root {plain_dir};
        location / {{ types {{ application/atom+xml atom; }} }}
    }}
    include {tmp}/site.conf;
}}
"""
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(main)
    return path


# --- wrk --------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, duration: int, connections: int, headers: dict | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True,
                         timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99 = float(m.group(1)) * _UNITS[m.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p99_ms": p99, "non_2xx_3xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else None}


# --- main -------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per target (median)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--gunicorn-arg", action="append", default=[],
                    help="extra gunicorn option(s) to compare settings, e.g. --gunicorn-arg=-k=sync")
    args = ap.parse_args(argv)
    for tool in ("wrk", "nginx", "gunicorn"):
        if not shutil.which(tool) and not (tool == "nginx" and os.path.exists("/usr/sbin/nginx")):
            print(f"bench/serve.py needs {tool}", file=sys.stderr)
            return 2
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    import redis

    from aggregator.embedded import ensure_server, stop_server
    from aggregator.keys import Keys
    from aggregator.store import Store
    from syndicate_ant import load_rows, save_all

    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    os.chmod(tmp, 0o755)  # nginx workers (user nobody when started as root) read files here
    procs: list[subprocess.Popen] = []
    redis_dir = os.path.join(tmp, "redis")
    try:
        rows_path = os.path.join(tmp, "rows.jsonl")
        n_rows = write_rows(rows_path)
        sock = ensure_server(redis_dir)
        prefix = "bench"
        client = redis.Redis(unix_socket_path=sock, decode_responses=True)
        save_all(Store(client, Keys(prefix)), load_rows(rows_path))

        port_app, port_file, port_prod = free_port(), free_port(), free_port()
        port_naive = free_port()
        public = f"http://127.0.0.1:{port_prod}/"
        env = dict(os.environ, REDIS_URL=f"unix://{sock}", AGG_KEY_PREFIX=prefix,
                   AGG_PUBLIC_URL=public, AGG_BENCH_ROWS=rows_path,
                   AGG_BIND=f"127.0.0.1:{port_app}", PYTHONPATH=ROOT)

        # Pre-render the hot outputs exactly as `python -m web.cache prerender` does.
        public_dir, plain_dir = os.path.join(tmp, "public"), os.path.join(tmp, "plain")
        subprocess.run(
            [sys.executable, "-c",
             "import sys; sys.path[:0]=[%r, %r]; from bench.serve import bench_app;"
             "from web.cache import prerender; print(prerender(bench_app(), %r))"
             % (ROOT, os.path.join(ROOT, "tests"), public_dir)],
            env=env, check=True, capture_output=True, timeout=120,
        )
        os.makedirs(os.path.join(plain_dir, "feeds"))
        shutil.copy(os.path.join(public_dir, "feeds", "all.atom"),
                    os.path.join(plain_dir, "feeds", "all.atom"))

        procs.append(subprocess.Popen(
            ["gunicorn", "-c", os.path.join(ROOT, "deploy", "gunicorn.conf.py"),
             "--log-level", "warning", *args.gunicorn_arg, "bench.serve:bench_app()"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(
                os.path.join(tmp, "gunicorn.log"), "w"),
            start_new_session=True,
        ))
        procs.append(subprocess.Popen(
            ["gunicorn", "-c", os.path.join(ROOT, "deploy", "gunicorn.conf.py"),
             "--log-level", "warning", *args.gunicorn_arg, "bench.serve:bench_app()"],
            cwd=ROOT, env=dict(env, AGG_BENCH_FAST_PATH="0", AGG_BIND=f"127.0.0.1:{port_naive}"), stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmp, "gunicorn-naive.log"), "w"), start_new_session=True,
        ))
        conf = nginx_config(tmp, port_file, port_prod, port_app, plain_dir, public_dir)
        check = subprocess.run([nginx_bin, "-t", "-q", "-c", conf, "-p", tmp],
                               capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx -t: {check.stderr}")
        procs.append(subprocess.Popen([nginx_bin, "-c", conf, "-p", tmp, "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        targets = {
            "nginx-file": f"http://127.0.0.1:{port_file}{FEED}",
            "gunicorn": f"http://127.0.0.1:{port_app}{FEED}",
            "flask-view": f"http://127.0.0.1:{port_naive}{FEED}",
            "production": f"http://127.0.0.1:{port_prod}{FEED}",
            "prod-dynamic": f"http://127.0.0.1:{port_prod}{FEED}?limit=50",
        }
        for url in targets.values():
            wait_http(url)
        # Same bytes everywhere (the gunicorn-direct render uses the same public URL).
        bodies = {name: fetch(url)[2] for name, url in targets.items()}
        ref = bodies["nginx-file"]
        same = {name: b == ref for name, b in bodies.items() if name != "prod-dynamic"}
        assert all(same.values()), f"bodies differ: {same}"

        # Rounds, each measuring every target once: the machine's background load drifts
        # (2 shared cores), so a ratio is taken within a round, and the median of the
        # rounds' ratios is reported.
        etags = {}
        for name, url in targets.items():
            etags[name] = fetch(url)[1].get("ETag")
            fetch(url, {"If-None-Match": etags[name]})  # warm
        rounds: list[dict] = []
        for _ in range(args.rounds):
            one = {}
            for name, url in targets.items():
                one[name] = {
                    "200": wrk(url, args.duration, args.connections),
                    "304": wrk(url, args.duration, args.connections,
                               {"If-None-Match": etags[name]}),
                }
            rounds.append(one)
        results = {}
        for name in targets:
            results[name] = {}
            for code in ("200", "304"):
                runs = [r[name][code] for r in rounds]
                ratios = [r[name][code]["rps"] / r["nginx-file"][code]["rps"] for r in rounds]
                results[name][code] = {
                    "rps": round(statistics.median(x["rps"] for x in runs), 1),
                    "p99_ms": round(statistics.median(x["p99_ms"] for x in runs), 2),
                    "ratio": round(statistics.median(ratios), 3),
                    "ratios": [round(x, 3) for x in ratios],
                    "non_2xx_3xx": sum(x["non_2xx_3xx"] for x in runs),
                }

        if any(r[c]["non_2xx_3xx"] for r in results.values() for c in ("200", "304")):
            for log in ("gunicorn.log", "gunicorn-naive.log", "nginx-error.log"):
                path = os.path.join(tmp, log)
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"--- {log} (errors during the run)\n" + f.read()[-2000:],
                              file=sys.stderr)
        if not args.json_only:
            print(f"hot {FEED}: {len(ref)} bytes, {n_rows} items; wrk -t2 "
                  f"-c{args.connections} -d{args.duration}s x {args.rounds} rounds on 127.0.0.1, "
                  f"{os.cpu_count()} cores; medians, ratio = median of per-round ratios")
            print(f"{'target':<13} {'200 req/s':>10} {'p99 ms':>8} {'ratio':>6}   "
                  f"{'304 req/s':>10} {'p99 ms':>8} {'ratio':>6}")
            for name, r in results.items():
                a, b = r["200"], r["304"]
                print(f"{name:<13} {a['rps']:>10.0f} {a['p99_ms']:>8.2f} {a['ratio']:>6.2f}   "
                      f"{b['rps']:>10.0f} {b['p99_ms']:>8.2f} {b['ratio']:>6.2f}")
        print(json.dumps({
            "bench": "serve", "feed": FEED, "bytes": len(ref), "items": n_rows,
            "duration_s": args.duration, "rounds": args.rounds,
            "connections": args.connections,
            "results": {k: {c: v[c] for c in ("200", "304")} for k, v in results.items()},
        }))
        return 0
    except Exception:
        for log in ("gunicorn.log", "nginx-error.log"):
            path = os.path.join(tmp, log)
            if os.path.exists(path):
                with open(path) as f:
                    print(f"--- {log}\n" + f.read()[-3000:], file=sys.stderr)
        raise
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)  # gunicorn's workers / nginx's workers too
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        stop_server(redis_dir)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
