"""Score story grouping on labelled real news.

    python bench/grouping.py [--shared ../shared] [--quick] [--stemmers] [--sweep]
                             [--heldout] [--pairs]

1. Gold window (../shared/data/gold/dev_2018-03-12_13.jsonl joined with ANT items on
   docno): the items (title, abstract as summary, time as published) are written as JSON
   lines in published order and run through `python -m aggregator.group` (the production
   path: save_poll + Grouper.process_pending on a throwaway embedded Redis). Prints BCubed
   and pairwise P/R/F1 for stories and topics.
2. Order robustness: the same items arriving in other orders (each item delayed by a
   random 0-6 h; and a full random shuffle of the window); agreement = pairwise F1 of the
   shuffled grouping against the in-order one, plus the shuffled run's F1 against gold.
3. SemEval-2022 Task 8 Arabic pairs: Pearson r of our similarity with the human Overall
   score (1 = same ... 4 = unrelated, so r is expected negative); accuracy of the same-story
   decision on pairs <= 1.5 (same) vs >= 3.5 (different).
4. ANS headline paraphrases (stance "agree", dev + test): recall of the same-story decision.

5. --heldout: the window's two days as halves (2018-03-12: 201 items, 65 gold pairs;
   2018-03-13: 202 items, 204 pairs, 91 of them one story). Each story threshold of a grid
   runs on the whole window in published order plus --seeds 0-6 h delay orders; pairwise
   P/R/F1 is scored within each half (pairs across days are left out) and averaged over
   the orders. The threshold is then chosen on one half (best F1 with P >= 0.9, else best
   F1) and reported on the other: what a new window would see.
6. --pairs: pair-level separability, no clustering: every pair of the window scored with
   similarity() (document frequencies of the window itself, as the CLI ends up with),
   average precision and recall at precision >= 0.9 per half. Stable where clustering
   scores jump with one merge, so representation changes are compared here first.

For 3 and 4 the document frequencies come from the whole ANT corpus (what a running
service has accumulated), computed in-process with the same tokens() and similarity().
Data: ANT corpus v2.1 (Chouigui et al., Apache-2.0); SemEval-2022 Task 8; ANS (Khouja 2020).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from aggregator import arabic  # noqa: E402
from aggregator import group as G  # noqa: E402


# --- metrics ---------------------------------------------------------------------------------

def _clusters(labels: dict[str, str]) -> dict[str, set[str]]:
    c = defaultdict(set)
    for i, lab in labels.items():
        c[lab].add(i)
    return c


def bcubed(pred: dict[str, str], gold: dict[str, str]) -> tuple[float, float, float]:
    pc, gc = _clusters(pred), _clusters(gold)
    p = r = 0.0
    for i in gold:
        a, b = pc[pred[i]], gc[gold[i]]
        inter = len(a & b)
        p += inter / len(a)
        r += inter / len(b)
    p, r = p / len(gold), r / len(gold)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def pairs_of(labels: dict[str, str]) -> set[tuple[str, str]]:
    out = set()
    for members in _clusters(labels).values():
        for a, b in itertools.combinations(sorted(members), 2):
            out.add((a, b))
    return out


def pairwise(pred: dict[str, str], gold: dict[str, str]) -> tuple[float, float, float]:
    pp, gp = pairs_of(pred), pairs_of(gold)
    tp = len(pp & gp)
    p = tp / len(pp) if pp else 1.0
    r = tp / len(gp) if gp else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def fmt(t) -> str:
    return "P %.3f  R %.3f  F1 %.3f" % t


# --- data --------------------------------------------------------------------------------------

def load_gold(shared: str):
    gold = [json.loads(l) for l in open(os.path.join(shared, "data/gold/dev_2018-03-12_13.jsonl"))]
    want = {g["docno"] for g in gold}
    ant = {}
    with gzip.open(os.path.join(shared, "data/ant/items.jsonl.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["docno"] in want:
                ant[d["docno"]] = d
    rows = []
    for g in gold:
        a = ant[g["docno"]]
        rows.append({"id": a["docno"], "source": a["src"], "title": a["title"],
                     "summary": a["abstract"], "published": a["time"]})
    rows.sort(key=lambda r: (G._parse_date(r["published"]), r["id"]))
    stories = {g["docno"]: g["story"] for g in gold}
    topics = {g["docno"]: g["topic"] for g in gold}
    return rows, stories, topics, ant


def run_cli_subprocess(rows: list[dict]) -> dict[str, tuple[str, str]]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        path = fh.name
    try:
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        out = subprocess.run([sys.executable, "-m", "aggregator.group", path], cwd=REPO, env=env,
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    res = {}
    lines = out.splitlines()
    assert len(lines) == len(rows), (len(lines), len(rows))
    for r, line in zip(rows, lines):
        o = json.loads(line)
        assert o["id"] == r["id"]
        res[o["id"]] = (o["story"], o["topic"])
    return res


class InProcess:
    """One embedded Redis for many in-process runs (sweeps): same code path as the CLI."""

    def __init__(self):
        import redis
        from aggregator.embedded import ensure_server

        self.tmp = tempfile.mkdtemp(prefix="bench-group-")
        self.client = redis.Redis(unix_socket_path=ensure_server(self.tmp), decode_responses=True)
        self.n = 0

    def run(self, rows, params=None) -> dict[str, tuple[str, str]]:
        from aggregator.keys import Keys

        self.n += 1
        keys = Keys(prefix=f"b{self.n}")
        buf = io.StringIO()
        G.run_cli((json.dumps(r, ensure_ascii=False) for r in rows), self.client, keys, out=buf,
                  params=params)
        self.client.flushdb()
        return {o["id"]: (o["story"], o["topic"]) for o in map(json.loads, buf.getvalue().splitlines())}

    def close(self):
        from aggregator.embedded import stop_server

        stop_server(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)


def score(res, stories, topics) -> dict:
    ps = {i: s for i, (s, _) in res.items()}
    pt = {i: t for i, (_, t) in res.items()}
    return {
        "story_pair": pairwise(ps, stories), "story_b3": bcubed(ps, stories),
        "topic_pair": pairwise(pt, topics), "topic_b3": bcubed(pt, topics),
    }


def day_halves(rows) -> dict[str, set[str]]:
    """Item ids by UTC publication day (the gold window has two)."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        out[G._parse_date(r["published"]).date().isoformat()].add(r["id"])
    return dict(sorted(out.items()))


def _restrict(labels: dict[str, str], ids: set[str]) -> dict[str, str]:
    return {i: v for i, v in labels.items() if i in ids}


def heldout(ip, rows, stories, params, thresholds, seeds: int) -> None:
    halves = day_halves(rows)
    orders = [rows] + [reorder(rows, s, "delay") for s in range(seeds)]
    table = {}  # threshold -> half -> mean (P, R, F1); "all" too
    for th in thresholds:
        p = replace(params, story_threshold=th)
        acc: dict[str, list] = defaultdict(list)
        for rr in orders:
            ps = {i: s for i, (s, _) in ip.run(rr, p).items()}
            acc["all"].append(pairwise(ps, stories))
            for day, ids in halves.items():
                acc[day].append(pairwise(_restrict(ps, ids), _restrict(stories, ids)))
        table[th] = {k: tuple(sum(x) / len(v) for x in zip(*v)) for k, v in acc.items()}
        print(f"story_threshold {th:.2f}: all {fmt(table[th]['all'])} | "
              + " | ".join(f"{d} {fmt(table[th][d])}" for d in halves), flush=True)

    def choose(day):
        ok = [th for th in thresholds if table[th][day][0] >= 0.9]
        return max(ok or thresholds, key=lambda th: table[th][day][2])

    days = list(halves)
    for a, b in ((days[0], days[1]), (days[1], days[0])):
        th = choose(a)
        print(f"chosen on {a}: threshold {th:.2f} ({fmt(table[th][a])}); held out {b}: "
              f"{fmt(table[th][b])}")


def _average_precision(scored: list[tuple[float, bool]]) -> tuple[float, float]:
    """(average precision, best recall at precision >= 0.9) of scores against labels."""
    scored = sorted(scored, key=lambda x: -x[0])
    n_pos = sum(1 for _, y in scored if y) or 1
    tp = 0
    ap = r_at = 0.0
    for k, (_, y) in enumerate(scored, 1):
        if y:
            tp += 1
            ap += tp / k
            if tp / k >= 0.9:
                r_at = tp / n_pos
    return ap / n_pos, r_at


def pair_separability(rows, stories, params) -> None:
    halves = day_halves(rows)
    docs = [G.make_doc(it.id, it.source, it.title, it.summary_text, it.published.timestamp(), params)
            for it in map(G._item_from_json, rows)]
    df: dict[str, int] = {}
    for d in docs:
        for t in set(d.title_terms) | set(d.lead_terms):
            df[t] = df.get(t, 0) + 1
    idf = G.Idf(df, len(docs), params.idf_power, params.idf_prior_docs)
    w = [G.weights(d, idf, params) for d in docs]
    for day, ids in halves.items():
        idx = [k for k, d in enumerate(docs) if d.id in ids]
        scored = [(G.similarity(docs[i], docs[j], idf, params, w[i], w[j]),
                   stories[docs[i].id] == stories[docs[j].id]) for i, j in itertools.combinations(idx, 2)]
        ap, r9 = _average_precision(scored)
        print(f"pairs {day}: {len(scored)} pairs, {sum(y for _, y in scored)} same-story; "
              f"average precision {ap:.3f}, recall at precision >= 0.9 {r9:.3f}")


def print_scores(name, sc):
    print(f"{name}")
    print(f"  stories pairwise {fmt(sc['story_pair'])}   BCubed {fmt(sc['story_b3'])}")
    print(f"  topics  pairwise {fmt(sc['topic_pair'])}   BCubed {fmt(sc['topic_b3'])}")


def reorder(rows, seed: int, mode: str):
    rnd = random.Random(seed)
    if mode == "shuffle":
        out = rows[:]
        rnd.shuffle(out)
        return out
    delayed = [(G._parse_date(r["published"]) + timedelta(hours=rnd.uniform(0, 6)), r["id"], r) for r in rows]
    return [r for _, _, r in sorted(delayed, key=lambda x: (x[0], x[1]))]


# --- pair sets -----------------------------------------------------------------------------------

def ant_idf(shared: str, params) -> G.Idf:
    df: dict[str, int] = {}
    n = 0
    with gzip.open(os.path.join(shared, "data/ant/items.jsonl.gz"), "rt", encoding="utf-8") as fh:
        for line in fh:
            a = json.loads(line)
            ts = set(arabic.tokens(a["title"])) | set(arabic.tokens(a["abstract"])[: params.lead_tokens])
            for t in ts:
                df[t] = df.get(t, 0) + 1
            n += 1
    return G.Idf(df, n)


def _doc(i, title, summary, params):
    return G.Doc(str(i), "x", 0.0, arabic.tokens(title), arabic.tokens(summary)[: params.lead_tokens])


def pearson(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    vx = sum((x - mx) ** 2 for x in xs) ** 0.5
    vy = sum((y - my) ** 2 for y in ys) ** 0.5
    return cov / (vx * vy)


def semeval(shared, idf, params):
    rows = [json.loads(l) for l in open(os.path.join(shared, "data/semeval2022_ar/dev_pairs.jsonl"))]
    sims, overall = [], []
    ok = total = 0
    for r in rows:
        t1, _, b1 = r["text1"].strip().partition("\n")
        t2, _, b2 = r["text2"].strip().partition("\n")
        s = G.similarity(_doc(1, t1, b1, params), _doc(2, t2, b2, params), idf, params)
        o = float(r["Overall"])
        sims.append(s)
        overall.append(o)
        if o <= 1.5 or o >= 3.5:
            total += 1
            ok += (s >= params.story_threshold) == (o <= 1.5)
    return pearson(sims, overall), ok / total, total, len(rows)


def ans(shared, idf, params):
    hits = total = 0
    for split in ("dev", "test"):
        with open(os.path.join(shared, f"data/ans/stance/{split}.csv"), encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r["stance"] != "agree":
                    continue
                s = G.similarity(_doc(1, r["s1"], "", params), _doc(2, r["s2"], "", params), idf, params)
                total += 1
                hits += s >= params.story_threshold
    return hits / total, total


# --- main ------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    ap.add_argument("--quick", action="store_true", help="gold scores only")
    ap.add_argument("--stemmers", action="store_true", help="compare stemmers (in-process)")
    ap.add_argument("--sweep", action="store_true", help="threshold sweep (in-process)")
    ap.add_argument("--errors", action="store_true", help="print wrong merges and misses")
    ap.add_argument("--heldout", action="store_true",
                    help="threshold chosen on one day of the window, scored on the other")
    ap.add_argument("--pairs", action="store_true", help="pair-level separability per day")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    shared = os.path.abspath(args.shared)
    rows, stories, topics, ant = load_gold(shared)
    params = G.DEFAULT_PARAMS

    if args.pairs:
        pair_separability(rows, stories, params)
        return 0
    if args.stemmers or args.sweep or args.heldout:
        ip = InProcess()
        try:
            if args.heldout:
                heldout(ip, rows, stories, params, (0.24, 0.26, 0.28, 0.30, 0.32, 0.34, 0.36), args.seeds)
            if args.stemmers:
                # each stemmer at its own best threshold: best F1, and best F1 with P >= 0.9
                for name in ("light", "prefix", "snowball", "isri", "none"):
                    arabic.set_stemmer(name)
                    runs = []
                    for th in (0.22, 0.26, 0.30, 0.34, 0.38, 0.42):
                        sc = score(ip.run(rows, G.Params(story_threshold=th)), stories, topics)
                        runs.append((th, sc["story_pair"], sc["story_b3"][2]))
                    best = max(runs, key=lambda r: r[1][2])
                    prec = [r for r in runs if r[1][0] >= 0.9]
                    bp = max(prec, key=lambda r: r[1][2]) if prec else None
                    print(f"stemmer {name:9s} best: th {best[0]:.2f} story pairwise {fmt(best[1])} B3 F1 {best[2]:.3f}"
                          + (f" | with P>=0.9: th {bp[0]:.2f} {fmt(bp[1])}" if bp else " | never P>=0.9"))
                arabic.set_stemmer("light")
            if args.sweep:
                for th in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45):
                    p = G.Params(story_threshold=th, topic_threshold=params.topic_threshold)
                    sc = score(ip.run(rows, p), stories, topics)
                    print(f"story_threshold {th:.2f}: stories pairwise {fmt(sc['story_pair'])} B3 F1 {sc['story_b3'][2]:.3f}")
                for th in (0.08, 0.1, 0.12, 0.15, 0.2):
                    p = G.Params(topic_threshold=th)
                    sc = score(ip.run(rows, p), stories, topics)
                    print(f"topic_threshold {th:.2f}: topics pairwise {fmt(sc['topic_pair'])} B3 F1 {sc['topic_b3'][2]:.3f}")
        finally:
            ip.close()
        return 0

    print(f"gold window: {len(rows)} items, {len(set(stories.values()))} stories, "
          f"{len(set(topics.values()))} topics; CLI: python -m aggregator.group")
    base = run_cli_subprocess(rows)
    sc = score(base, stories, topics)
    print_scores("in published order", sc)
    if args.errors:
        print_errors(base, stories, ant)
    if args.quick:
        return 0

    ps_base = {i: s for i, (s, _) in base.items()}
    for mode in ("delay-0-6h", "shuffle"):
        agree, gold_f1 = [], []
        for seed in range(args.seeds):
            res = run_cli_subprocess(reorder(rows, seed, mode))
            ps = {i: s for i, (s, _) in res.items()}
            agree.append(pairwise(ps, ps_base)[2])
            gold_f1.append(pairwise(ps, stories)[2])
        print(f"order {mode:10s} ({args.seeds} seeds): agreement with in-order (pairwise F1) "
              f"mean {sum(agree)/len(agree):.3f} min {min(agree):.3f}; story pairwise F1 vs gold "
              f"mean {sum(gold_f1)/len(gold_f1):.3f} min {min(gold_f1):.3f}")

    idf = ant_idf(shared, params)
    r, acc, n_dec, n = semeval(shared, idf, params)
    print(f"SemEval-2022 ar ({n} pairs): Pearson r(similarity, Overall) = {r:.3f} "
          f"(|r| {abs(r):.3f}); same-story accuracy on {n_dec} pairs <=1.5 vs >=3.5 = {acc:.3f}")
    rec, n = ans(shared, idf, params)
    print(f"ANS paraphrase headlines (agree, dev+test, {n} pairs): same-story recall = {rec:.3f}")
    return 0


def print_errors(res, stories, ant):
    ps = {i: s for i, (s, _) in res.items()}
    pp, gp = pairs_of(ps), pairs_of(stories)
    print("\n-- wrong merges (predicted same story, gold differs)")
    for a, b in sorted(pp - gp):
        print(f"  {stories[a]} | {stories[b]}\n    {ant[a]['src']}: {ant[a]['title']}\n    {ant[b]['src']}: {ant[b]['title']}")
    print("\n-- misses (gold same story, predicted apart)")
    for a, b in sorted(gp - pp):
        print(f"  {stories[a]}\n    {ant[a]['src']}: {ant[a]['title']}\n    {ant[b]['src']}: {ant[b]['title']}")


if __name__ == "__main__":
    sys.exit(main())
