"""Every Redis key the product uses, under one prefix. Nothing else builds key strings.

Layout (P = prefix, default "agg"):
  items
    P:item:<item_id>            hash   one stored item (fields: see store.ITEM_FIELDS)
    P:tl                        zset   item_id -> published ts (the timeline)
    P:tl:src:<source_id>        zset   item_id -> published ts
    P:tl:tag:<tag>              zset   item_id -> published ts
    P:tl:cc:<country>           zset   item_id -> published ts
    P:seen                      zset   item_id -> first-seen ts (retention runs on our clock)
    P:retiring                  set    items retention has chosen and is taking out of their
                                       stories; deleted with the items, so a pass cut short
                                       between the two is finished by the next one
    P:trimmed                   zset   item_id -> when retention dropped it: a feed still
                                       listing it does not store it again as new (kept for
                                       the retention age, then pruned)
    P:trimmed:at                string when retention last dropped items (epoch seconds): the
                                       Last-Modified of a feed it emptied, which must not
                                       go back to the empty-feed constant
  sources
    P:src:<source_id>           hash   SourceState
    P:sched                     zset   source_id -> next poll ts (restart resumes from it)
  meta
    P:heartbeat                 string worker heartbeat (iso time), with a TTL
    P:worker:lock               string "host pid token" of the one polling worker, 30 s TTL
                                       renewed every 5 s (a second worker waits for it)
    P:outputs:version           string bumped whenever items or stories change
    P:config:good:<file>        hash   data, digest, saved: the last valid version of one
                                       feeds file (<file>: a hash of its real path) any
                                       process loaded; a process started while that file
                                       does not validate runs it (config.load_config_or_last_good).
                                       Per file: a one-off run on another file must not
                                       replace what the worker falls back on
  grouping hand-off
    P:group:pending             zset   item_id -> published ts: stored, not yet grouped.
                                       Written in the same transaction as the item, removed
                                       by grouping, so a crash between the two loses nothing.
  grouping (written by aggregator/group.py; GS = P:group)
    GS:is                       hash   item_id -> story_id (the assignment; idempotency)
    GS:story:<story_id>         hash   lead, first/last published, updated, sources, label,
                                       topic, label terms
    GS:story:<story_id>:items   zset   item_id -> published ts (members)
    GS:stl                      zset   story_id -> its newest member's published ts (story
                                       timeline, newest last)
    GS:topic:<topic_id>         hash   label, updated, linked ("1": the label is the words
                                       its first two stories share, group.link_label)
    GS:topic:<topic_id>:stories zset   story_id -> its newest member's published ts
    GS:vec:<hour>               hash   item_id -> matching record (story, topic, source,
                                       published, terms, indexed terms) of items published in
                                       that hour (UTC epoch hours): the durable copy of the
                                       matching index; whole buckets expire/are trimmed
    GS:dup:<day>                hash   url/guid/text fingerprint -> published, story, topic of
                                       the first item with it, per published day
    GS:buckets                  zset   vec/dup bucket key -> its hour (trimming walks it)
    GS:lock                     string single-grouper lock (SET NX PX), token value
    GS:schema                   string layout version of the grouping state (group.SCHEMA);
                                       an older one is upgraded when the worker starts
    GS:gen                      string token of the last write to grouping state: a grouper
                                       whose in-process working set was not built from
                                       that write reloads it (group.py, _Window)
    GS:df, GS:ndocs, GS:post:*  retired: all-time document frequencies and postings of
                                       earlier versions (group_retired)
  metrics (aggregator/metrics.py: shared by every process, read by the web's /metrics)
    P:metrics:polls             hash   outcome -> polls
    P:metrics:latency           hash   bucket upper bound ("0.25", ..., "+Inf") -> polls whose
                                       fetch took that long (not cumulative), "sum" -> seconds
    P:metrics:counters          hash   items_new, items_updated, stories_formed, cache_hits,
                                       cache_renders, redis_errors, alerts_sent, alerts_failed
    P:metrics:recent            list   "outcome host source" of the latest polls, newest first
                                       (our-outage detection, aggregator/alerts.py)
  alerts (aggregator/alerts.py)
    P:alerts:open               hash   incident ("source:<id>", "outage") -> JSON; an incident
                                       is alerted when its field is created (HSETNX) and
                                       recovered when it is deleted: once each, whatever the
                                       number of processes
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "agg"

    # --- items -----------------------------------------------------------------------
    def item(self, item_id: str) -> str:
        return f"{self.item_prefix}{item_id}"

    @property
    def item_prefix(self) -> str:
        """item(id) is this plus the id (save_poll's script builds the keys from it)."""
        return f"{self.prefix}:item:"

    @property
    def timeline(self) -> str:
        return f"{self.prefix}:tl"

    def source_timeline(self, source_id: str) -> str:
        return f"{self.prefix}:tl:src:{source_id}"

    def tag_timeline(self, tag: str) -> str:
        return f"{self.prefix}:tl:tag:{tag}"

    def country_timeline(self, country: str) -> str:
        return f"{self.prefix}:tl:cc:{country.upper()}"

    @property
    def first_seen(self) -> str:
        return f"{self.prefix}:seen"

    @property
    def retiring(self) -> str:
        return f"{self.prefix}:retiring"

    @property
    def trimmed(self) -> str:
        return f"{self.prefix}:trimmed"

    @property
    def trimmed_at(self) -> str:
        return f"{self.prefix}:trimmed:at"

    # --- sources ---------------------------------------------------------------------
    def source_state(self, source_id: str) -> str:
        return f"{self.prefix}:src:{source_id}"

    @property
    def schedule(self) -> str:
        return f"{self.prefix}:sched"

    # --- meta ------------------------------------------------------------------------
    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}:heartbeat"

    @property
    def worker_lock(self) -> str:
        return f"{self.prefix}:worker:lock"

    @property
    def outputs_version(self) -> str:
        return f"{self.prefix}:outputs:version"

    def config_good(self, file_id: str) -> str:
        return f"{self.prefix}:config:good:{file_id}"

    def index_pattern(self, kind: str) -> str:
        """SCAN pattern for every per-source/tag/country index (retention walks them)."""
        return f"{self.prefix}:tl:{kind}:*"

    # --- grouping (stories, topics, candidate index) ----------------------------------
    @property
    def group_pending(self) -> str:
        return f"{self.prefix}:group:pending"

    @property
    def group_match(self) -> str:
        """Hash: pending item id -> its matching terms (matching.record), written with the
        item, deleted when the grouper has placed it."""
        return f"{self.prefix}:group:match"

    # Defined by aggregator/group.py's author below this line.

    @property
    def group_is(self) -> str:
        return f"{self.prefix}:group:is"

    def group_story(self, story_id: str) -> str:
        return f"{self.prefix}:group:story:{story_id}"

    def group_story_items(self, story_id: str) -> str:
        return f"{self.prefix}:group:story:{story_id}:items"

    @property
    def group_story_timeline(self) -> str:
        return f"{self.prefix}:group:stl"

    def group_topic(self, topic_id: str) -> str:
        return f"{self.prefix}:group:topic:{topic_id}"

    def group_topic_stories(self, topic_id: str) -> str:
        return f"{self.prefix}:group:topic:{topic_id}:stories"

    def group_vec(self, hour: int) -> str:
        return f"{self.group_vec_prefix}{hour}"

    @property
    def group_vec_prefix(self) -> str:
        return f"{self.prefix}:group:vec:"

    def group_dup(self, day: int) -> str:
        return f"{self.group_dup_prefix}{day}"

    @property
    def group_dup_prefix(self) -> str:
        return f"{self.prefix}:group:dup:"

    @property
    def group_buckets(self) -> str:
        return f"{self.prefix}:group:buckets"

    @property
    def group_lock(self) -> str:
        return f"{self.prefix}:group:lock"

    @property
    def group_schema(self) -> str:
        return f"{self.prefix}:group:schema"

    @property
    def group_gen(self) -> str:
        return f"{self.prefix}:group:gen"

    @property
    def group_retired(self) -> tuple[str, ...]:
        """Keys earlier versions wrote and nothing reads now (document frequencies over all
        time); a grouper deletes them when it loads. Their postings (GS:post:<term>) expire
        by their TTL."""
        return (f"{self.prefix}:group:df", f"{self.prefix}:group:ndocs")

    # --- metrics and alerts (aggregator/metrics.py, aggregator/alerts.py) ---------------
    @property
    def metrics_polls(self) -> str:
        return f"{self.prefix}:metrics:polls"

    @property
    def metrics_latency(self) -> str:
        return f"{self.prefix}:metrics:latency"

    @property
    def metrics_counters(self) -> str:
        return f"{self.prefix}:metrics:counters"

    @property
    def metrics_recent(self) -> str:
        return f"{self.prefix}:metrics:recent"

    @property
    def alerts_open(self) -> str:
        return f"{self.prefix}:alerts:open"
