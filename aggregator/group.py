"""Story and topic grouping: every stored item joins a story (and its story a topic).

Incremental, in the ingest path, with its whole state in Redis (keys: keys.py, "grouping").

How a batch of pending items is placed (Grouper.process_pending), oldest published first:
  1. exact duplicates first: same canonical URL, same GUID, or the same normalised title +
     summary words (a wire copy) within the window -> the story of the earlier item;
  2. candidates: each item's heaviest known terms (tf * IDF, so title words first;
     document frequencies kept incrementally in Redis) are looked up in an inverted index
     of the items published within +-window of it. A Lua script sums the IDF of the shared
     query terms per hit and returns the top candidates with their matching records in
     the same call: one round trip per item, pipelined for the whole batch, never
     all-pairs. Earlier items of the same batch are found through a local index;
  3. score: TF-IDF cosine of (title x3 + 20 lead tokens), minus 0.2 per day apart;
  4. join the story of the best-scoring member (story score = max over its members) when
     the score clears Params.story_threshold, else start a story; a new story joins the
     topic of the most similar candidate (plain cosine) above Params.topic_threshold.

Every threshold is defined in `Params` with the evaluation figure behind it.

Durability: an item's assignment, every index update it causes and its removal from
group:pending are written in one MULTI/EXEC per batch. Story ids are derived from the id of
the item that founded the story, so re-running a batch after a kill -9 before EXEC
recomputes the same ids; items already assigned (group:is) are skipped, so re-running
after EXEC assigns nothing twice. One grouper at a time (a SET NX lock; another caller
gets [] and its items wait in group:pending).

The index only covers the window: postings are trimmed by published time on every write
and carry a TTL; matching records and duplicate fingerprints live in hour/day buckets that
are deleted as the window moves. Cost per item therefore does not grow with history.

Measured (python bench/grouping.py; gold window 2018-03-12/13, 403 items):
  stories pairwise P 0.938 R 0.588 F1 0.723, BCubed F1 0.931; topics pairwise F1 0.697;
  order: 0-6 h delays agree 0.93, a full shuffle 0.89 (pairwise F1 against in-order);
  held out (--heldout --seeds 2, the two days apart, 3 orders): day 1 F1 0.712, day 2
  F1 0.716; pair level (--pairs): average precision 0.836 / 0.739 per day.
Cost (python bench/grouping_cost.py --sizes 10000,100000 --measure 3000, AOF on, 2 shared
cores): 410-450 items/s at 10k and 100k stored, ~2.3 ms/item. A third is Redis (the
candidate script ~0.3 ms/item, half of it the posting range reads; the batch transaction
with the index write ~0.45 ms/item), two thirds Python (decide ~0.45, building and packing
the write ~0.4, tokenize ~0.2, candidate replies ~0.2, df ~0.2, story state ~0.1 ms/item).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from datetime import datetime, timezone

import redis

from . import arabic
from .keys import Keys
from .store import Store
from .types import Item, Story, Topic

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
    lead_tokens: int = 20
    # Join the best story when (cosine - time penalty) >= this. With the 0.2/day penalty:
    # 0.26 -> P 0.80 R 0.69 F1 0.74; 0.28 -> P 0.86 R 0.63 F1 0.73; 0.30 -> P 0.94 R 0.59
    # F1 0.73. A wrong merge is worse than a miss (the issue), so the P >= 0.9 point.
    story_threshold: float = 0.30
    # A new story joins the topic of the most similar candidate (plain cosine, no time
    # penalty: topics run over days) when it clears this. 0.12 -> topic pairwise F1 0.65,
    # 0.15 -> 0.69 (P 0.73), 0.18 -> 0.64, 0.20 -> 0.62.
    topic_threshold: float = 0.15
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
    text_dup_min_tokens: int = 6
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

@dataclass
class Doc:
    id: str
    source: str
    published: float
    title_terms: list[str]
    lead_terms: list[str]
    story: str | None = None
    topic: str | None = None
    text_key: str | None = None
    _tf: dict[str, float] | None = field(default=None, repr=False)

    def tf(self, title_weight: float) -> dict[str, float]:
        if self._tf is None:
            c: Counter = Counter()
            for t in self.title_terms:
                c[t] += title_weight
            for t in self.lead_terms:
                c[t] += 1.0
            self._tf = {t: 1.0 + math.log(v) if v >= 1 else v for t, v in c.items()}
        return self._tf

    def record(self) -> str:
        return SEP.join((
            self.story or "", self.topic or "", self.source, repr(self.published),
            " ".join(self.title_terms), " ".join(self.lead_terms),
        ))

    @classmethod
    def from_record(cls, item_id: str, rec: str) -> "Doc":
        story, topic, source, pub, tt, lt = rec.split(SEP)
        return cls(item_id, source, float(pub), tt.split(), lt.split(), story or None, topic or None)


def make_doc(item: Item, params: Params = DEFAULT_PARAMS) -> Doc:
    title = arabic.tokens(item.title)
    summary = arabic.tokens(item.summary_text)
    doc = Doc(
        id=item.id,
        source=item.source,
        published=item.published.timestamp(),
        title_terms=title,
        lead_terms=summary[: params.lead_tokens],
    )
    if len(title) + len(summary) >= params.text_dup_min_tokens:
        # wire copy: the same words in the same order once spelling, stop words and
        # clitics are normalised away
        text = " ".join(title) + "|" + " ".join(summary)
        doc.text_key = hashlib.sha1(text.encode()).hexdigest()[:16]
    return doc


class Idf(dict):
    """IDF from document frequencies: idf(t) = ln((N + prior + 1) / (df(t) + 1)) + 1.

    A dict of the values computed so far: idf[t] on a computed term is a C-level lookup
    (the grouping asks ~200 values per item); idf(t) is the same."""

    def __init__(self, df: dict[str, int], n: int, power: float = 1.0, prior: float = 0.0):
        super().__init__()
        self.power = power
        self.prior = prior
        self._cache_n = n
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

    def add(self, terms: Iterable[str]) -> None:
        """Count one more document (within a batch). Cached values of the added terms are
        dropped; all of them only when N has grown by 5 % since they were computed (N
        moves every value a little, df moves one term's value a lot)."""
        self.n += 1
        if self.n > self._cache_n * 1.05 + 1:
            self.clear()
            self._cache_n = self.n
        df = self.df
        for t in terms:
            df[t] = df.get(t, 0) + 1
            self.pop(t, None)


def weights(doc: Doc, idf: Idf, params: Params) -> tuple[dict[str, float], float]:
    w = {t: v * idf[t] for t, v in doc.tf(params.title_weight).items()}
    return w, math.hypot(*w.values()) or 1.0


def similarity(a: Doc, b: Doc, idf: Idf, params: Params = DEFAULT_PARAMS,
               wa: tuple[dict[str, float], float] | None = None,
               wb: tuple[dict[str, float], float] | None = None) -> float:
    """TF-IDF cosine of (weighted title + lead), minus a time-distance penalty
    (params.time_penalty_per_day; pass a Params with 0 for the plain cosine)."""
    va, na = wa or weights(a, idf, params)
    vb, nb = wb or weights(b, idf, params)
    if len(va) > len(vb):
        va, vb = vb, va
    # in the smaller vector's order: the sum is the same float whatever the hash seed
    s = sum([x * vb[t] for t, x in va.items() if t in vb]) / (na * nb)
    if params.time_penalty_per_day:
        s -= params.time_penalty_per_day * abs(a.published - b.published) / 86400.0
    return s


# --- ids and fingerprints ------------------------------------------------------------------

def story_id_for(item_id: str) -> str:
    return "s" + hashlib.sha1(item_id.encode()).hexdigest()[:12]


def topic_id_for(story_id: str) -> str:
    return "t" + story_id[1:]


def fingerprints(item: Item, doc: Doc, params: Params) -> list[str]:
    fps = []
    if item.url:
        fps.append("u:" + hashlib.sha1(item.url.strip().encode()).hexdigest()[:16])
    if item.guid and len(item.guid) >= 8:
        fps.append("g:" + hashlib.sha1(item.guid.strip().encode()).hexdigest()[:16])
    if doc.text_key:
        fps.append("x:" + doc.text_key)
    return fps


_WORD = re.compile(r"[\w\u0600-\u06ff]+")


def label_terms(title: str) -> list[tuple[str, str]]:
    """(stem, surface word) pairs of a title, stop words out, in order."""
    out = []
    for w in _WORD.findall(title.replace("_", " ")):
        st = _label_stem(w, arabic.stemmer_name())
        if st:
            out.append((st, w))
    return out


@lru_cache(maxsize=100_000)
def _label_stem(word: str, stemmer: str) -> str:
    ts = arabic.tokens(word)
    return ts[0] if ts and not ts[0].isdigit() and len(ts[0]) > 1 else ""


# --- the Lua candidate query ------------------------------------------------------------------

_CANDIDATES_LUA = """
local min_ts, max_ts = ARGV[1], ARGV[2]
local per_term, k, vprefix = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local min_score = tonumber(ARGV[6])
local scores, ts = {}, {}
for i, key in ipairs(KEYS) do
  local w = tonumber(ARGV[6 + i])
  local hits = redis.call('ZREVRANGEBYSCORE', key, max_ts, min_ts, 'LIMIT', 0, per_term)
  for j = 1, #hits do
    local id = hits[j]
    scores[id] = (scores[id] or 0) + w
  end
end
local arr = {}
for id, s in pairs(scores) do
  if s >= min_score then arr[#arr + 1] = {id, s} end
end
table.sort(arr, function(a, b)
  if a[2] == b[2] then return a[1] < b[1] end
  return a[2] > b[2]
end)
local out = {}
for i = 1, math.min(#arr, k) do
  local member = arr[i][1]  -- "<hour>|<item id>": the hour names the record's bucket
  local bar = string.find(member, "|", 1, true)
  local id = string.sub(member, bar + 1)
  local rec = redis.call('HGET', vprefix .. string.sub(member, 1, bar - 1), id)
  if rec then
    out[#out + 1] = id
    out[#out + 1] = rec
  end
end
return out
"""

# One call writes a batch's matching index: postings (trimmed to the window, TTL
# refreshed), document frequencies, matching records in hour buckets. Payload lines:
# id TAB published TAB hour TAB record TAB indexed terms TAB all unique terms (for df).
_INDEX_LUA = r"""
local prefix, cutoff, ttl, payload = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local touched, hours, n = {}, {}, 0
for line in string.gmatch(payload, "[^\n]+") do
  local id, pub, hour, rec, idx, terms = string.match(line, "^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
  for t in string.gmatch(idx, "%S+") do
    redis.call('ZADD', prefix .. 'post:' .. t, pub, hour .. '|' .. id)
    touched[t] = true
  end
  for t in string.gmatch(terms, "%S+") do
    redis.call('HINCRBY', prefix .. 'df', t, 1)
  end
  redis.call('HSET', prefix .. 'vec:' .. hour, id, rec)
  hours[hour] = true
  n = n + 1
end
for t in pairs(touched) do
  local key = prefix .. 'post:' .. t
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
  redis.call('EXPIRE', key, ttl)
end
for h in pairs(hours) do
  redis.call('EXPIRE', prefix .. 'vec:' .. h, ttl)
  redis.call('ZADD', prefix .. 'buckets', tonumber(h), prefix .. 'vec:' .. h)
end
redis.call('INCRBY', prefix .. 'ndocs', n)
return n
"""

# The single-grouper lock lives LOCK_TTL_MS after a crash: short, so a worker restarted
# after a kill -9 mid-batch groups again within seconds (a batch of 500 takes well under a
# second). Correctness does not rest on the TTL: the batch's final transaction WATCHes the
# lock and is discarded if it is no longer ours (see _process), so a batch that outlives
# its lock can never write beside another grouper's.
LOCK_TTL_MS = 8_000


class LockLost(Exception):
    """The batch outlived its lock; nothing was written and its items stay pending."""


class LockBusy(Exception):
    """Retention could not get the grouping lock in time; the items are kept for now."""


# Before the final write: keep the lock if it is ours, take it back if it expired unowned
# (a slow batch on a busy machine, nobody else waiting), refuse if another grouper has it.
_KEEP_LOCK_LUA = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# Retention (Store.trim calls Grouper.forget before it deletes the items): the trimmed
# items leave their stories; a story left without members goes (hash, members, timeline,
# topic membership), and a topic left without stories goes. A story that keeps members
# gets its earliest remaining one as lead if its lead went, and its new size. Run before the
# items are deleted and idempotent, so a crash in between is mended by the next run.
# KEYS: is, story timeline, then per story: story, members, topic, topic stories.
# ARGV: per story, in the same order: story id, number of trimmed ids, the ids.
_FORGET_LUA = """
local a, gone = 1, 0
for s = 3, #KEYS, 4 do
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
    redis.call('HSET', story, 'n', redis.call('ZCARD', members), 'first', first[2])
    if lead_gone then redis.call('HSET', story, 'lead', first[1], 'lead_pub', first[2]) end
  end
end
return gone
"""


_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
    terms: dict[str, list]  # stem -> [count, surface, first position]
    n: int = 0
    new: bool = False
    changed: bool = False

    def to_hash(self, idf: Idf) -> dict[str, str]:
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
            "terms": json.dumps(self.terms, ensure_ascii=False),
            "label": self.label(idf),
        }

    @classmethod
    def from_hash(cls, sid: str, h: dict[str, str]) -> "_StoryState":
        return cls(
            id=sid, lead=h["lead"],
            lead_key=(float(h["lead_pub"]), int(h["lead_rank"]), h["lead"]),
            first=float(h["first"]), last=float(h["last"]), updated=float(h["updated"]),
            sources=h["sources"].split(SEP) if h.get("sources") else [],
            topic=h["topic"], terms=json.loads(h.get("terms") or "{}"), n=int(h.get("n") or 0),
        )

    def add_title(self, title: str) -> None:
        seen = set()
        for pos, (stem, surface) in enumerate(label_terms(title)):
            if stem in seen:
                continue
            seen.add(stem)
            if stem in self.terms:
                self.terms[stem][0] += 1
            else:
                self.terms[stem] = [1, surface, pos]
        if len(self.terms) > 16:  # keep the hash small: the label needs the top few
            keep = sorted(self.terms.items(), key=lambda kv: (-kv[1][0], kv[1][2]))[:12]
            self.terms = dict(keep)

    def label(self, idf: Idf, n: int = 4) -> str:
        ranked = sorted(self.terms.items(), key=lambda kv: (-kv[1][0] * idf[kv[0]], kv[1][2]))[:n]
        ranked.sort(key=lambda kv: kv[1][2])
        return " ".join(v[1] for _, v in ranked)


# --- the grouper ----------------------------------------------------------------------------

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
        self.store = Store(client, keys)
        self.source_rank = dict(source_rank or {})
        self.params = replace(params or DEFAULT_PARAMS, window_hours=window_hours)
        self._candidates = client.register_script(_CANDIDATES_LUA)
        self._unlock = client.register_script(_UNLOCK_LUA)
        self._keep_lock = client.register_script(_KEEP_LOCK_LUA)
        self._forget = client.register_script(_FORGET_LUA)
        self._index = client.register_script(_INDEX_LUA)
        self.last_scores: list[tuple[str, str, float]] = []  # (item, best candidate, score)
        self.timings: dict[str, float] = {}
        # process-local caches (see _process): document frequencies and candidate weights
        self._df_cache: dict[str, int] = {}
        self._wcache: dict[str, tuple[dict[str, float], float]] = {}
        self._docs: dict[str, Doc] = {}
        self._idf: Idf | None = None  # IDF values, kept like the df cache (see _process)
        self._epoch_n = 0

    def _fetch_df(self, terms: Iterable[str]) -> None:
        missing = [t for t in terms if t not in self._df_cache]
        if missing:
            for t, v in zip(missing, self.r.hmget(self.keys.group_df, missing)):
                self._df_cache[t] = int(v) if v else 0

    def _reset_caches(self) -> None:
        self._df_cache.clear()
        self._wcache.clear()
        self._idf = None

    def _rank(self, source: str) -> int:
        return self.source_rank.get(source, 1 << 20)

    # -- the batch ----------------------------------------------------------------------
    def process_pending(self, now: datetime, limit: int = 1000) -> list[tuple[str, str, str]]:
        """Group up to `limit` pending items, oldest published first.

        Returns (item_id, story_id, topic_id) for every item assigned by this call.
        """
        k, p_ = self.keys, self.params
        token = uuid.uuid4().hex
        if not self.r.set(k.group_lock, token, nx=True, px=LOCK_TTL_MS):
            return []  # another grouper is at work; its items will not be lost
        try:
            return self._process(now, limit, token)
        except (LockLost, redis.WatchError):
            self._reset_caches()
            return []  # the items stay pending for the next pass
        except BaseException:
            self._reset_caches()  # they may hold increments of a batch that was not written
            raise
        finally:
            self._unlock(keys=[k.group_lock], args=[token])

    def _process(self, now: datetime, limit: int, token: str) -> list[tuple[str, str, str]]:
        k, P = self.keys, self.params
        t_last = [time.perf_counter()]

        def _tick(name: str) -> None:  # cumulative seconds per phase (bench/profiling)
            t = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + t - t_last[0]
            t_last[0] = t
        ids = self.r.zrange(k.group_pending, 0, limit - 1)
        if not ids:
            return []
        _tick("load")
        # RT: the items and whether they already have a story (a re-run after a crash).
        with self.r.pipeline(transaction=False) as p:
            for i in ids:
                p.hgetall(k.item(i))
            p.hmget(k.group_is, ids)
            rows = p.execute()
        assigned = rows[-1]
        items: list[Item] = []
        gone: list[str] = []
        from .store import item_from_hash
        for i, h, s in zip(ids, rows[:-1], assigned):
            if s is not None or not h:
                gone.append(i)  # already grouped, or trimmed by retention meanwhile
            else:
                items.append(item_from_hash(h))
        if not items:
            self.r.zrem(k.group_pending, *gone)
            return []
        items.sort(key=lambda it: (it.published.timestamp(), self._rank(it.source), it.id))
        docs = [make_doc(it, P) for it in items]
        win = P.window_hours * 3600.0

        _tick("tokenize")
        # RT: document frequencies of the batch's terms.
        # A process-local cache holds them between batches (IDF only needs to be about
        # right); it is dropped whenever N has grown by 5 % since it was filled. So are
        # the IDF values computed from it (~60 per item otherwise recomputed every batch).
        n = int(self.r.get(k.group_ndocs) or 0)
        if n < self._epoch_n or n > self._epoch_n * 1.05 + 20:
            self._reset_caches()
            self._epoch_n = n
        df = self._df_cache
        terms = {t for d in docs for t in (*d.title_terms, *d.lead_terms)}
        self._fetch_df(terms)
        if self._idf is None:
            self._idf = Idf(df, n, P.idf_power, P.idf_prior_docs)
        else:
            self._idf.n = n  # values cached under an N within 5 % stay, as within a batch
        idf = self._idf

        _tick("df")
        # RT: candidates of every item (Lua, pipelined) and duplicate fingerprints.
        fps = [fingerprints(it, d, P) for it, d in zip(items, docs)]
        queries = []
        for d in docs:
            # the item's heaviest terms (tf * idf, so title words first) that are in the
            # index at all: a term no earlier item had cannot retrieve anything
            tf = d.tf(P.title_weight)
            known = [t for t in tf if df.get(t)]
            known.sort(key=lambda t: (-tf[t] * idf[t], t))
            queries.append(known[: P.query_terms])
        days = sorted({int(d.published // 86400) + o for d in docs for o in range(-3, 4)})
        all_fps = sorted({f for fl in fps for f in fl})
        with self.r.pipeline(transaction=False) as p:
            for d, q in zip(docs, queries):
                if q:
                    self._candidates(
                        keys=[k.group_posting(t) for t in q],
                        args=[repr(d.published - win), repr(d.published + win), P.per_term_limit,
                              P.candidates, k.group_vec_prefix,
                              repr(P.min_shared * sum(idf[t] for t in q)),
                              *(repr(idf[t]) for t in q)],
                        client=p,
                    )
            if all_fps:
                for day in days:
                    p.hmget(k.group_dup(day), all_fps)
            res = p.execute()
        docs_cache = self._docs
        if len(docs_cache) > 100_000:
            docs_cache.clear()
        cand_rows = iter(res[: sum(1 for q in queries if q)])
        remote: list[list[Doc]] = []
        for q in queries:
            row = next(cand_rows) if q else []
            cs = []
            for j in range(0, len(row), 2):
                c = docs_cache.get(row[j])  # records never change: parse each once
                if c is None:
                    c = docs_cache[row[j]] = Doc.from_record(row[j], row[j + 1])
                cs.append(c)
            remote.append(cs)
        dup_hits: dict[str, list[str]] = {}
        if all_fps:
            for day, vals in zip(days, res[len(res) - len(days):]):
                for f, v in zip(all_fps, vals):
                    if v:
                        dup_hits.setdefault(f, []).append(v)

        _tick("candidates")
        # RT: document frequencies of candidate terms we have not fetched.
        self._fetch_df({t for cs in remote for c in cs for t in (*c.title_terms, *c.lead_terms)})

        _tick("df2")
        # Decide, item by item, in published order; earlier items of the batch are
        # candidates for later ones through a local index.
        local_post: dict[str, list[Doc]] = {}
        local_fp: dict[str, Doc] = {}
        decided: list[tuple[Item, Doc, bool]] = []  # (item, doc, founded a story)
        self.last_scores = []
        P_raw = replace(P, time_penalty_per_day=0.0)
        wcache = self._wcache  # candidate weights, kept while the IDF epoch lasts
        if len(wcache) > 200_000:
            wcache.clear()
        for it, d, q, cands, fl in zip(items, docs, queries, remote, fps):
            story = topic = None
            # 1. exact duplicates
            for f in fl:
                if f in local_fp:
                    story, topic = local_fp[f].story, local_fp[f].topic
                    break
                for v in dup_hits.get(f, ()):
                    other_pub, s_, t_ = v.split(SEP)
                    if abs(float(other_pub) - d.published) <= win:
                        story, topic = s_, t_
                        break
                if story:
                    break
            best_score, best = -1.0, None
            topic_score, topic_best = -1.0, None
            if story is None:
                # 2. candidates: remote + earlier items of this batch
                seen = {c.id for c in cands}
                lw: Counter = Counter()
                if local_post:
                    # the query as it stands now that earlier batch items are counted
                    tf = d.tf(P.title_weight)
                    q = sorted((t for t in tf if df.get(t)), key=lambda t: (-tf[t] * idf[t], t))
                    q = q[: P.query_terms]
                local_by_id: dict[str, Doc] = {}
                for t in q:
                    w_t = idf[t]
                    for c in local_post.get(t, ()):
                        if c.id not in seen and abs(c.published - d.published) <= win:
                            lw[c.id] += w_t
                            local_by_id[c.id] = c
                floor = P.min_shared * sum(idf[t] for t in q)
                extra = [local_by_id[i] for i, w in sorted(lw.items(), key=lambda kv: (-kv[1], kv[0]))
                         if w >= floor][: P.candidates]
                wd = weights(d, idf, P)
                topic_score, topic_best = -1.0, None
                per_story: dict[str, tuple[float, Doc]] = {}
                for c in (*cands, *extra):
                    if c.id == d.id or not c.story:
                        continue
                    wc = wcache.get(c.id)
                    if wc is None:
                        wc = wcache[c.id] = weights(c, idf, P)
                    raw = similarity(d, c, idf, P_raw, wd, wc)
                    s = raw - P.time_penalty_per_day * abs(d.published - c.published) / 86400.0
                    if c.story not in per_story or s > per_story[c.story][0]:
                        per_story[c.story] = (s, c)
                    if raw > topic_score:
                        topic_score, topic_best = raw, c
                if per_story:
                    sid, (best_score, best) = max(per_story.items(), key=lambda kv: (kv[1][0], kv[0]))
                    if best_score >= P.story_threshold:
                        story, topic = best.story, best.topic
                self.last_scores.append((d.id, best.id if best else "", best_score))
            founded = story is None
            if founded:
                story = story_id_for(d.id)
                if topic_best is not None and topic_score >= P.topic_threshold and topic_best.topic:
                    topic = topic_best.topic
                else:
                    topic = topic_id_for(story)
            d.story, d.topic = story, topic
            for f in fl:
                local_fp.setdefault(f, d)
            for t in set(d.title_terms) | set(d.lead_terms):
                local_post.setdefault(t, []).append(d)
            idf.add(set(d.title_terms) | set(d.lead_terms))
            decided.append((it, d, founded))

        _tick("decide")
        # RT: current state of the existing stories (and topics) that items joined.
        existing = sorted({d.story for _, d, f in decided if not f} - {story_id_for(d.id) for _, d, f in decided if f})
        topics_touched = sorted({d.topic for _, d, _ in decided})
        with self.r.pipeline(transaction=False) as p:
            for sid in existing:
                p.hgetall(k.group_story(sid))
            for tid in topics_touched:
                p.hgetall(k.group_topic(tid))
            res = p.execute()
        stories: dict[str, _StoryState] = {}
        for sid, h in zip(existing, res[: len(existing)]):
            if h:
                stories[sid] = _StoryState.from_hash(sid, h)
        topic_rows = dict(zip(topics_touched, res[len(existing):]))

        for it, d, founded in decided:
            pub = d.published
            # our clock, not the feed's: a future-dated item must not pin its story on top
            seen_ts = it.first_seen.timestamp() if it.first_seen else pub
            key = (pub, self._rank(it.source), it.id)
            st = stories.get(d.story)
            if st is None:
                st = stories[d.story] = _StoryState(
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
            st.add_title(it.title)
            st.changed = True

        _tick("stories")
        # RT: one transaction: assignments, stories, topics, index, df, pending removal.
        horizon = min(max(d.published for d in docs), now.timestamp())
        cutoff = horizon - win - 6 * 3600
        ttl = int(win + 6 * 3600) * 2
        old_buckets = self.r.zrangebyscore(k.group_buckets, "-inf", cutoff / 3600.0)
        out: list[tuple[str, str, str]] = []
        if not self._keep_lock(keys=[k.group_lock], args=[token, LOCK_TTL_MS]):
            raise LockLost
        with self.r.pipeline(transaction=True) as p:
            p.watch(k.group_lock)  # fencing: EXEC fails if the lock changed hands
            if p.get(k.group_lock) != token:
                raise LockLost
            p.multi()
            p.hset(k.group_is, mapping={d.id: d.story for _, d, _ in decided})
            for it, d, _ in decided:
                p.zadd(k.group_story_items(d.story), {d.id: d.published})
                out.append((d.id, d.story, d.topic))
            topic_updates: dict[str, tuple[float, str]] = {}
            for st in stories.values():
                p.hset(k.group_story(st.id), mapping=st.to_hash(idf))
                p.zadd(k.group_story_timeline, {st.id: st.updated})
                p.zadd(k.group_topic_stories(st.topic), {st.id: st.updated})
                prev = topic_updates.get(st.topic)
                if prev is None or st.updated > prev[0]:
                    topic_updates[st.topic] = (st.updated, st.label(idf) if st.new else "")
            for tid, (upd, lab) in topic_updates.items():
                row = topic_rows.get(tid) or {}
                mapping = {"updated": repr(max(upd, float(row.get("updated") or 0)))}
                if not row.get("label"):
                    mapping["label"] = lab or next(
                        (s.label(idf) for s in stories.values() if s.topic == tid), "")
                p.hset(k.group_topic(tid), mapping=mapping)
            # the matching index (one Lua call) and the duplicate fingerprints
            lines = []
            dup_days: dict[int, dict[str, str]] = {}
            for (it, d, _), fl in zip(decided, fps):
                uniq = set(d.title_terms) | set(d.lead_terms)
                tf = d.tf(P.title_weight)
                indexed = sorted(uniq, key=lambda t: (-tf[t] * idf[t], t))[: P.index_terms]
                lines.append(f"{d.id}\t{d.published!r}\t{int(d.published // 3600)}\t{d.record()}"
                             f"\t{' '.join(indexed)}\t{' '.join(uniq)}")
                day = int(d.published // 86400)
                for f in fl:
                    dup_days.setdefault(day, {}).setdefault(f, SEP.join((repr(d.published), d.story, d.topic)))
            self._index(keys=[], args=[k.group_index_prefix, repr(cutoff), ttl, "\n".join(lines)], client=p)
            for day, m in dup_days.items():
                dk = k.group_dup(day)
                # first fingerprint wins (earlier published, or arrived first)
                for f, v in m.items():
                    p.hsetnx(dk, f, v)
                p.expire(dk, ttl)
                p.zadd(k.group_buckets, {dk: day * 24})
            if old_buckets:
                p.delete(*old_buckets)
                p.zrem(k.group_buckets, *old_buckets)
            p.zrem(k.group_pending, *[d.id for _, d, _ in decided], *gone)
            p.incr(k.outputs_version)
            p.execute()
        _tick("write")
        return out

    def forget(self, item_ids: Sequence[str], wait: float = 30.0) -> int:
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
            keys, args = [k.group_is, k.group_story_timeline], []
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
        """Stories newest first by `updated`; `before` is an exclusive cursor."""
        top = f"({before}" if before is not None else "+inf"
        return self.r.zrevrangebyscore(self.keys.group_story_timeline, top, "-inf",
                                       start=0, num=limit, withscores=True)

    def get_topic(self, topic_id: str) -> Topic | None:
        h = self.r.hgetall(self.keys.group_topic(topic_id))
        if not h:
            return None
        stories = self.r.zrevrange(self.keys.group_topic_stories(topic_id), 0, -1)
        return Topic(id=topic_id, label=h.get("label", ""), stories=tuple(stories),
                     updated=datetime.fromtimestamp(float(h["updated"]), UTC))

    def topic_stories(self, topic_id: str, limit: int = 50) -> list[str]:
        """Story ids of a topic, newest updated first."""
        return self.r.zrevrange(self.keys.group_topic_stories(topic_id), 0, limit - 1)

    def story_items(self, story_id: str) -> list[str]:
        """Member item ids, oldest published first."""
        return self.r.zrange(self.keys.group_story_items(story_id), 0, -1)


# --- CLI -------------------------------------------------------------------------------------

def _parse_date(value: str) -> datetime:
    try:
        from .normalize import parse_date  # type: ignore[attr-defined]
    except ImportError:  # the normaliser is another module; fall back to the stdlib
        parse_date = None
    dt = None
    if parse_date is not None:
        try:
            dt = parse_date(value)
        except Exception:  # noqa: BLE001 - any failure: try the stdlib
            dt = None
    if dt is None:
        import email.utils

        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            dt = email.utils.parsedate_to_datetime(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _item_from_json(row: dict) -> Item:
    from .types import Item as _Item

    pub = _parse_date(str(row["published"]))
    summary = row.get("summary") or ""
    text = (row.get("title") or "") + "\n" + summary
    return _Item(
        id=str(row["id"]), source=str(row["source"]), url=row.get("url") or None,
        guid=row.get("guid") or None, title=row.get("title") or "", summary_html=summary,
        summary_text=summary, published=pub, first_seen=pub, updated=pub,
        content_hash=hashlib.sha1(text.encode()).hexdigest(),
    )


def run_cli(lines: Iterable[str], client: redis.Redis, keys: Keys, out=sys.stdout,
            flush_every: int = 50, params: Params | None = None) -> None:
    """Store the items in arrival order, batching per run of one source (as a poll would),
    group through Grouper.process_pending, and print one result line per input line."""
    from .types import Source, SourceState

    store = Store(client, keys)
    grouper = Grouper(client, keys, params=params)
    rows = [json.loads(line) for line in lines if line.strip()]
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

    for row in rows:
        item = _item_from_json(row)
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
    fh = sys.stdin if args.items == "-" else open(args.items, encoding="utf-8")
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
