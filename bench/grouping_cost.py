"""Cost of grouping with 10k / 100k / 1M items already stored and grouped.

    python bench/grouping_cost.py [--shared ../shared] [--sizes 10000,100000,1000000]
                                  [--measure 5000] [--batch 100]

Items: the 31,525 ANT items (Apache-2.0) and the 31,030 SaudiNewsNet articles
(CC BY-NC-SA 4.0, used here for measurement only), title + first 300 characters of the
text as summary, cycled with a synthetic id suffix and a synthetic published time of one
item every --gap seconds (default 30 s: ~2,900 items a day, a busy 100-feed aggregator).
A text therefore recurs only every ~62k items (~21 days), outside the 72 h window.

One Redis (embedded, or REDIS_URL with prefix "cost") grows through the sizes: it is
filled to N items through Store.save_poll + Grouper.process_pending (the production path),
then --measure further items are stored and grouped in batches of --batch (a poll's
worth), AOF on, and only process_pending is timed, with the grouping process's
garbage-collector step after each batch (runner.SurvivorFreezer); then filling goes on to
the next size. The items carry the matching records normalise makes in the feed-reading
processes; making them is timed apart and reported as normalise's share.
Reported: items/s, mean per-item time, p50/p95 per batch, Redis memory per stored item
(total, and the grouping keys alone, by sampling), the time per item of each phase of a
batch (Grouper.timings: wall time, a round trip counted in the phase that makes it), and
the grouper's in-process working set (items of the window it holds; this process's peak
RSS, which includes the texts).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timedelta, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import redis  # noqa: E402

from aggregator import matching  # noqa: E402
from aggregator.embedded import ensure_server, stop_server  # noqa: E402
from aggregator.group import Grouper  # noqa: E402
from aggregator.keys import Keys  # noqa: E402
from aggregator.runner import SurvivorFreezer  # noqa: E402
from aggregator.store import Store  # noqa: E402
from aggregator.types import Item, Source, SourceState  # noqa: E402

UTC = timezone.utc
freezer = SurvivorFreezer()  # the grouping process's garbage-collector policy (runner.py)


def load_texts(shared: str) -> list[tuple[str, str, str]]:
    texts = []
    with gzip.open(os.path.join(shared, "data/ant/items.jsonl.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            a = json.loads(line)
            texts.append((a["src"], a["title"], a["abstract"] or a["text"][:300]))
    for path in sorted(glob.glob(os.path.join(shared, "data/saudinewsnet/dataset/*.zip"))):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                for a in json.loads(z.read(name)):
                    texts.append((a["source"], a.get("title") or "", (a.get("content") or "")[:300]))
    random.Random(7).shuffle(texts)  # interleave the two corpora
    return texts


def items_from(texts, start: int, count: int, t0: datetime, gap: float) -> list[Item]:
    out = []
    n = len(texts)
    for i in range(start, start + count):
        src, title, summary = texts[i % n]
        pub = t0 + timedelta(seconds=i * gap)
        out.append(Item(
            id=f"c{i}", source=src, url=f"https://example.org/{src}/{i}", guid=None,
            title=title, summary_html=summary, summary_text=summary, published=pub,
            first_seen=pub, updated=pub, content_hash=str(i),
            # as normalise makes it, in the feed-reading processes (timed apart: measure())
            match_record=matching.record(title, summary),
        ))
    return out


def store_and_group(store, grouper, items, batch: int, timed: bool) -> list[float]:
    """Store in polls of `batch` items (one source each), group after each poll."""
    per_batch = []
    for j in range(0, len(items), batch):
        chunk = items[j: j + batch]
        src = chunk[0].source
        store.save_poll(Source(id=src, url=f"bench:{src}", title=src), chunk, SourceState(),
                        chunk[-1].published)
        t = time.perf_counter()
        n = 0
        while True:
            done = grouper.process_pending(chunk[-1].published, limit=1000)
            n += len(done)
            if not done:
                break
            freezer.after_batch()  # as the grouping process does after each batch
        if timed:
            per_batch.append((time.perf_counter() - t, n))
    return per_batch


def grouping_memory(r: redis.Redis, keys: Keys, sample: int = 300) -> tuple[int, dict]:
    """Bytes used by P:group:* keys, estimated by sampling MEMORY USAGE per key kind."""
    kinds: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    base = f"{keys.prefix}:group:"
    for key in r.scan_iter(base + "*", count=5000):
        rest = key[len(base):]
        kind = rest.split(":")[0] + (":items" if rest.endswith(":items") else "") + (
            ":stories" if rest.endswith(":stories") else "")
        counts[kind] = counts.get(kind, 0) + 1
        lst = kinds.setdefault(kind, [])
        if len(lst) < sample:
            lst.append(key)
    total = 0
    detail = {}
    for kind, ks in kinds.items():
        sizes = [r.memory_usage(k, samples=0) or 0 for k in ks]
        est = int(statistics.mean(sizes) * counts[kind]) if sizes else 0
        detail[kind] = (counts[kind], est)
        total += est
    return total, detail


def measure(r, keys, store, grouper, texts, start, measure_n, batch, gap, t0, tmp) -> dict:
    if tmp:  # measure as production runs: AOF on (everysec), after its rewrite is done
        r.config_set("appendonly", "yes")
        time.sleep(0.2)
        while int(r.info("persistence").get("aof_rewrite_in_progress", 0)) or int(
                r.info("persistence").get("aof_rewrite_scheduled", 0)):
            time.sleep(0.5)
    load = os.getloadavg()[0]
    grouper.timings.clear()
    matching._TEXT_TERMS.clear()
    matching._RECORDS.clear()
    t = time.perf_counter()
    items = items_from(texts, start, measure_n, t0, gap)
    # normalise's share: the matching records (the item objects themselves cost ~2 us)
    record_ms = 1000 * (time.perf_counter() - t) / measure_n
    timings = store_and_group(store, grouper, items, batch, timed=True)
    if tmp:
        r.config_set("appendonly", "no")  # filling further is not what we measure
    secs = sum(s for s, _ in timings)
    grouped = sum(c for _, c in timings)
    per_item_batch = sorted(s / max(c, 1) for s, c in timings)
    used = int(r.info("memory")["used_memory"])
    gmem, detail = grouping_memory(r, keys)
    stored = start + measure_n
    return {
        "stored": start, "measured": grouped, "items_per_s": grouped / secs,
        "per_item_ms": 1000 * secs / grouped,
        "p50_ms": 1000 * per_item_batch[len(per_item_batch) // 2],
        "p95_ms": 1000 * per_item_batch[int(len(per_item_batch) * 0.95)],
        "mem_per_item": used / stored, "group_mem_per_item": gmem / stored,
        "group_detail": detail, "load": load,
        "phases": {k: 1000 * v / grouped for k, v in grouper.timings.items()},
        "record_ms": record_ms,
        "window_items": len(grouper._window.docs) if grouper._window else 0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_sizes(texts, sizes, measure_n: int, batch: int, gap: float, url: str | None):
    """One store that grows: fill to each size, measure there, keep filling.

    The measured items stay stored, so the store at the next size has those in too."""
    tmp = None
    if url:
        r = redis.Redis.from_url(url, decode_responses=True)
        keys = Keys(prefix="cost")
    else:
        tmp = tempfile.mkdtemp(prefix="bench-cost-")
        r = redis.Redis(unix_socket_path=ensure_server(tmp), decode_responses=True)
        r.config_set("appendonly", "no")  # the fill is not what we measure
        keys = Keys()
    try:
        store, grouper = Store(r, keys), Grouper(r, keys)
        t0 = datetime(2020, 1, 1, tzinfo=UTC)
        t = time.perf_counter()
        stored = 0
        filled_time = 0.0
        for n in sizes:
            while stored < n:
                cnt = min(20_000, n - stored)
                tf = time.perf_counter()
                store_and_group(store, grouper, items_from(texts, stored, cnt, t0, gap), 500, timed=False)
                filled_time += time.perf_counter() - tf
                stored += cnt
                print(f"  filled {stored:,} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
            res = measure(r, keys, store, grouper, texts, stored, measure_n, batch, gap, t0, tmp)
            res["fill_items_per_s"] = stored / filled_time
            stored += measure_n
            yield res
    finally:
        if tmp:
            stop_server(tmp)
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            for key in r.scan_iter(f"{keys.prefix}:*", count=5000):
                r.delete(key)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--max", type=int, default=None, help="skip sizes above this")
    ap.add_argument("--measure", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--gap", type=float, default=30.0, help="seconds between synthetic items")
    args = ap.parse_args(argv)
    texts = load_texts(os.path.abspath(args.shared))
    print(f"{len(texts):,} texts (ANT + SaudiNewsNet); batch {args.batch}; one item every {args.gap:g} s")
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.max:
        sizes = [s for s in sizes if s <= args.max]
    results = []
    for res in run_sizes(texts, sizes, args.measure, args.batch, args.gap, os.environ.get("REDIS_URL")):
        n = res["stored"]
        results.append(res)
        print(f"stored {n:>9,}: {res['items_per_s']:,.0f} items/s, {res['per_item_ms']:.3f} ms/item "
              f"(per batch p50 {res['p50_ms']:.3f}, p95 {res['p95_ms']:.3f} ms/item); "
              f"Redis {res['mem_per_item']:,.0f} B/stored item, grouping keys "
              f"{res['group_mem_per_item']:,.0f} B/item; fill {res['fill_items_per_s']:,.0f} items/s; "
              f"load average before measuring {res['load']:.1f} (2 cores)",
              flush=True)
        print("    ms/item by phase of process_pending:",
              ", ".join(f"{k} {v:.3f}" for k, v in res["phases"].items()), flush=True)
        print(f"    matching records made at normalise time (feed-reading processes, not timed "
              f"above): {res['record_ms']:.3f} ms/item", flush=True)
        print(f"    working set: {res['window_items']:,} items of the window in process; "
              f"peak RSS of this process {res['peak_rss_mb']:,.0f} MB", flush=True)
        print("    grouping keys (count, bytes):", {k: v for k, v in sorted(res["group_detail"].items())},
              flush=True)
    if len(results) > 1:
        base = results[0]["per_item_ms"]
        for res in results[1:]:
            print(f"per-item time at {res['stored']:,} / at {results[0]['stored']:,} = "
                  f"{res['per_item_ms'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
