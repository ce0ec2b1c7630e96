"""Arabic news aggregator: fetch, parse, normalise, store, group and syndicate feeds.

The public surface is re-exported here; everything else is an implementation detail.
"""
__version__ = "0.1.0"

from .config import Config, ConfigWatcher, load_config  # noqa: E402
from .errors import AggregatorError, ConfigError, ParseError, StoreError  # noqa: E402
from .fetch import Fetcher  # noqa: E402
from .normalize import canonical_url, normalize_feed  # noqa: E402
from .parse import parse_feed  # noqa: E402
from .settings import Settings  # noqa: E402
from .store import Store, connect  # noqa: E402
from .types import (  # noqa: E402
    EntryData,
    FeedData,
    FetchResult,
    Item,
    Outcome,
    PollReport,
    Source,
    SourceState,
    Story,
    Topic,
)
from .update import Pipeline, update_source  # noqa: E402

__all__ = [
    "AggregatorError", "Config", "ConfigError", "ConfigWatcher", "EntryData", "FeedData",
    "FetchResult", "Fetcher", "Item", "Outcome", "ParseError", "Pipeline",
    "PollReport", "Settings", "Source", "SourceState", "Store", "StoreError", "Story", "Topic",
    "canonical_url", "connect", "load_config", "normalize_feed", "parse_feed", "update_source",
]
