"""Every Redis key the product uses, under one prefix. Nothing else builds key strings.

Layout (P = prefix, default "agg"):
  items
    P:item:<item_id>            hash   one stored item (fields: see store.ITEM_FIELDS)
    P:tl                        zset   item_id -> published ts (the timeline)
    P:tl:src:<source_id>        zset   item_id -> published ts
    P:tl:tag:<tag>              zset   item_id -> published ts
    P:tl:cc:<country>           zset   item_id -> published ts
    P:seen                      zset   item_id -> first-seen ts (retention runs on our clock)
  sources
    P:src:<source_id>           hash   SourceState
    P:sched                     zset   source_id -> next poll ts (restart resumes from it)
  meta
    P:heartbeat                 string worker heartbeat (iso time), with a TTL
    P:outputs:version           string bumped whenever items or stories change
  grouping hand-off
    P:group:pending             zset   item_id -> published ts: stored, not yet grouped.
                                       Written in the same transaction as the item, removed
                                       by grouping, so a crash between the two loses nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "agg"

    # --- items -----------------------------------------------------------------------
    def item(self, item_id: str) -> str:
        return f"{self.prefix}:item:{item_id}"

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
    def outputs_version(self) -> str:
        return f"{self.prefix}:outputs:version"

    def index_pattern(self, kind: str) -> str:
        """SCAN pattern for every per-source/tag/country index (retention walks them)."""
        return f"{self.prefix}:tl:{kind}:*"

    # --- grouping (stories, topics, candidate index) ----------------------------------
    @property
    def group_pending(self) -> str:
        return f"{self.prefix}:group:pending"

    # Defined by aggregator/group.py's author below this line.
