"""Where a cold poll's CPU goes, per item: the limit's parse vs each stage of ours.

Fetches N newsroom clone feeds once (../shared/tools/newsroom), then times, single-threaded
on the same bytes (best of --repeat, process CPU time per item):

  limit parse   lxml etree.fromstring (what bench/ingest.py's limit does per feed)
  parse         aggregator.parse.parse_feed (lxml fast path, feedparser fallback)
  normalise     aggregator.normalize.normalize_feed
  store         Store.save_poll (one Lua call per feed)
  store, Redis  the Redis server's CPU for the same calls (INFO cpu), on another core

    python bench/ingest_stages.py [--feeds 100] [--shared ../shared] [--repeat 3]

bench/ingest.py gives the end-to-end ratios; this says why the cold ratio is what it is:
ours does parse + normalise + store in Python under one GIL, the limit only the C parse.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main():
    import urllib3
    from lxml import etree

    from aggregator.embedded import stop_server
    from aggregator.keys import Keys
    from aggregator.normalize import normalize_feed
    from aggregator.parse import parse_feed
    from aggregator.settings import Settings
    from aggregator.store import Store, connect
    from aggregator.types import Source, SourceState
    from ingest import clone_urls, newsroom

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=100)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    pool = urllib3.PoolManager()
    with newsroom(args.shared, -(-args.feeds // 5)) as listing:
        fetched = []
        for url in clone_urls(listing, args.feeds):
            r = pool.request("GET", url)
            fetched.append((url, r.data, {k.lower(): v for k, v in r.headers.items()}))
    sources = [Source(id=f"f{i}", url=u, title=f"f{i}", rank=i) for i, (u, _, _) in enumerate(fetched)]
    now = datetime.now(timezone.utc)
    feeds = [parse_feed(b, h, u) for u, b, h in fetched]
    items = [normalize_feed(s, f, first_seen=now, now=now) for s, f in zip(sources, feeds)]
    n = sum(len(i) for i in items)

    data_dir = tempfile.mkdtemp(prefix="bench-stages-")
    redis_url = os.environ.get("REDIS_URL")
    settings = Settings(redis_url=redis_url, data_dir=data_dir, key_prefix=f"stages{uuid.uuid4().hex[:6]}")
    store = Store(connect(settings), Keys(settings.key_prefix))

    def redis_cpu() -> float:
        info = store.r.info("cpu")
        return info["used_cpu_sys"] + info["used_cpu_user"]

    def store_all():
        for key in store.r.scan_iter(f"{settings.key_prefix}:*", count=5000):
            store.r.delete(key)
        r, t = redis_cpu(), time.process_time()
        for s, its in zip(sources, items):
            store.save_poll(s, its, SourceState(), now)
        return time.process_time() - t, redis_cpu() - r

    def cpu(fn) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            t = time.process_time()
            fn()
            best = min(best, time.process_time() - t)
        return best

    rows = [
        ("limit parse", cpu(lambda: [etree.fromstring(b) for _, b, _ in fetched])),
        ("parse", cpu(lambda: [parse_feed(b, h, u) for u, b, h in fetched])),
        ("normalise", cpu(lambda: [normalize_feed(s, f, first_seen=now, now=now)
                                   for s, f in zip(sources, feeds)])),
    ]
    stored = [store_all() for _ in range(args.repeat)]
    rows.append(("store", min(ours for ours, _ in stored)))
    for key in store.r.scan_iter(f"{settings.key_prefix}:*", count=5000):
        store.r.delete(key)
    if not redis_url:
        stop_server(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{len(fetched)} feeds, {n} items; CPU per item (best of {args.repeat}):")
    for name, seconds in rows:
        print(f"  {name:<12} {seconds / n * 1e6:7.1f} µs")
    ours = sum(seconds for name, seconds in rows[1:])
    print(f"  ours total   {ours / n * 1e6:7.1f} µs = {ours / rows[0][1]:.1f}× the limit's parse")
    print(f"  store, Redis {min(redis for _, redis in stored) / n * 1e6:7.1f} µs (the server's CPU, not ours)")


if __name__ == "__main__":
    main()
