"""Ingest throughput: our worker's code path vs the peer `reader` vs the limit, in one run.

For each system a fresh newsroom (../shared/tools/newsroom) serves N clone feeds of real
ANT news on 127.0.0.1; the system polls every feed once (cold: all 200s, everything new)
and again (warm: 304s, except Al Arabiya's clones which ignore validators and answer 200
with the same bytes). Reported: feeds/s and items/s per pass, and ratios to the limit.

  (a) ours:   aggregator.runner.poll_once over the worker's own pipeline (build_pipeline:
              fetch, parse, normalise, store in Redis, metrics and outage watch), grouping;
              feeds fetched and read in the worker's parse processes (--parse-processes,
              default one per core; 0: in the polling threads), grouping in its own process
              as the worker does on a multi-core machine (--grouping-process 0: a thread)
  (b) reader: reader.Reader.update_feeds(workers=C) into a fresh SQLite file
  (c) limit:  bare conditional GET (urllib3, same concurrency) + lxml parse, nothing stored

    python bench/ingest.py --feeds 500 [--rounds 3] [--concurrency 16] [--shared ../shared] [--json]

Rounds: the systems run in turn (limit, ours, ...) --rounds times and each round's ratios
are taken against that round's limit; the summary is the median per system and pass.
Two cores shared with other jobs change speed by a third within minutes, so one
sequential run can put the limit in a fast minute and ours in a slow one (or the reverse).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@contextmanager
def newsroom(shared: Path, clones: int):
    proc = subprocess.Popen(
        [sys.executable, str(shared / "tools/newsroom/newsroom.py"), "serve",
         "--clones", str(clones), "--window", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait()


def clone_urls(listing: dict, n: int) -> list[str]:
    return [f["url"] for f in listing["feeds"] if f["clone"]][:n]


def timed(fn):
    t = time.perf_counter()
    items = fn()
    return time.perf_counter() - t, items


# (c) the limit -----------------------------------------------------------------------
def run_limit(urls, concurrency):
    import urllib3
    from lxml import etree

    pool = urllib3.PoolManager(maxsize=concurrency)
    etags: dict[str, str] = {}
    atom = "{http://www.w3.org/2005/Atom}entry"

    def one(url):
        headers = {"Accept-Encoding": "gzip"}
        if url in etags:
            headers["If-None-Match"] = etags[url]
        r = pool.request("GET", url, headers=headers)
        if r.headers.get("ETag"):
            etags[url] = r.headers["ETag"]
        if r.status != 200:
            return 0
        root = etree.fromstring(r.data)
        return len(root.findall("channel/item")) or len(root.findall(atom))

    def once():
        with ThreadPoolExecutor(concurrency) as ex:
            return sum(ex.map(one, urls))

    return [timed(once), timed(once)]


# (a) ours ----------------------------------------------------------------------------
def run_ours(urls, concurrency, redis_url, parse_processes, group=True, grouping_process=False):
    from aggregator.runner import build_pipeline, make_grouping, poll_once
    from aggregator.settings import Settings
    from aggregator.types import Source

    data_dir = tempfile.mkdtemp(prefix="bench-ingest-")
    settings = Settings(redis_url=redis_url, data_dir=data_dir, allow_private_networks=True,
                        key_prefix=f"bench{uuid.uuid4().hex[:8]}", pool_size=concurrency,
                        per_host_limit=concurrency,  # every feed is on 127.0.0.1 here
                        parse_processes=parse_processes, grouping_process=grouping_process)
    sources = [Source(id=f"f{i}", url=u, title=f"f{i}", rank=i) for i, u in enumerate(urls)]
    pipe = build_pipeline(settings)  # the worker's: store, fetcher, parse pool, metrics
    store = pipe.store
    grouping = make_grouping(settings, pipe, sources) if group else None

    def once():  # returns when every new item is stored and grouped
        return sum(r.new for r in poll_once(sources, pipe, settings, grouping))

    passes = [timed(once), timed(once)]
    pipe.close()
    stored = store.count_items()
    for key in store.r.scan_iter(f"{settings.key_prefix}:*", count=5000):
        store.r.delete(key)
    if not redis_url:
        from aggregator.embedded import stop_server

        stop_server(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)  # its AOF is ~40 MB a run
    return passes, stored


# (b) the peer ------------------------------------------------------------------------
def run_reader(urls, concurrency):
    from reader import make_reader

    tmp = tempfile.mkdtemp(prefix="bench-reader-")
    path = os.path.join(tmp, "db.sqlite")
    reader = make_reader(path)
    for u in urls:
        reader.add_feed(u)

    def once():
        before = reader.get_entry_counts().total
        # scheduled=False: poll every feed now (by default reader skips feeds not yet due,
        # which would make its warm pass measure nothing).
        reader.update_feeds(workers=concurrency, scheduled=False)
        return reader.get_entry_counts().total - before

    passes = [timed(once), timed(once)]
    reader.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return passes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3, help="the systems in turn, this many times")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--parse-processes", type=int, default=None,
                    help="ours: processes reading feeds (default: the worker's, one per core)")
    ap.add_argument("--grouping-process", type=int, choices=(0, 1), default=None,
                    help="ours: group in a process of its own (default: the worker's, 1 "
                         "on a multi-core machine)")
    ap.add_argument("--skip-reader", action="store_true")
    ap.add_argument("--no-group", action="store_true",
                    help="also run ours without grouping (ingest alone), as 'ours-ng'")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from aggregator.settings import Settings

    worker = Settings.from_env({})  # the worker's defaults on this machine
    if args.parse_processes is None:
        args.parse_processes = worker.parse_processes
    if args.grouping_process is None:
        args.grouping_process = int(worker.grouping_process)
    clones = -(-args.feeds // 5)
    rounds: list[dict[str, list]] = []
    stored = 0
    for r in range(args.rounds):
        results: dict[str, list] = {}
        with newsroom(args.shared, clones) as listing:
            urls = clone_urls(listing, args.feeds)
            results["limit"] = run_limit(urls, args.concurrency)
        with newsroom(args.shared, clones) as listing:
            results["ours"], stored = run_ours(clone_urls(listing, args.feeds), args.concurrency,
                                               os.environ.get("REDIS_URL"), args.parse_processes,
                                               grouping_process=bool(args.grouping_process))
        if args.no_group:
            with newsroom(args.shared, clones) as listing:
                results["ours-ng"], _ = run_ours(clone_urls(listing, args.feeds), args.concurrency,
                                                 os.environ.get("REDIS_URL"), args.parse_processes,
                                                 group=False)
        if not args.skip_reader and r == 0:  # the peer is 20x slower: one round says enough
            with newsroom(args.shared, clones) as listing:
                results["reader"] = run_reader(clone_urls(listing, args.feeds), args.concurrency)
        rounds.append(results)

    n = len(urls)
    out = {"feeds": n, "concurrency": args.concurrency, "parse_processes": args.parse_processes,
           "grouping_process": args.grouping_process, "rounds": args.rounds,
           "stored_items": stored}
    print(f"{n} feeds, concurrency {args.concurrency}, ours reading in {args.parse_processes} "
          f"processes, grouping in {'its own process' if args.grouping_process else 'a thread'}; "
          f"ours stored {stored} items")
    print(f"{'round':<6}{'system':<8} {'pass':<5} {'seconds':>8} {'feeds/s':>9} {'items/s':>9} {'× limit':>8}")
    ratios: dict[tuple[str, str], list[float]] = {}
    for r, results in enumerate(rounds, 1):
        for system, passes in results.items():
            for p, (label, (seconds, items)) in enumerate(zip(("cold", "warm"), passes)):
                ratio = results["limit"][p][0] / seconds
                ratios.setdefault((system, label), []).append(ratio)
                out.setdefault(f"{system}_{label}", []).append(
                    {"seconds": round(seconds, 3), "feeds_per_s": round(n / seconds, 1),
                     "items_per_s": round(items / seconds, 1), "ratio_to_limit": round(ratio, 3)})
                print(f"{r:<6}{system:<8} {label:<5} {seconds:8.2f} {n / seconds:9.1f} "
                      f"{items / seconds:9.1f} {ratio:8.3f}")
    print("median × limit over rounds: " + ", ".join(
        f"{system} {label} {statistics.median(v):.3f}" for (system, label), v in ratios.items()
        if system != "limit"))
    out["median_ratio"] = {f"{s}_{l}": round(statistics.median(v), 3) for (s, l), v in ratios.items()}
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
