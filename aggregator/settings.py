"""Process settings from the environment (the feeds list itself lives in feeds.yaml)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from . import __version__
from .errors import SettingsError, StoreError

PROJECT_URL = "https://github.com/arabic-news-aggregator/aggregator"


def default_parse_processes() -> int:
    """One per core on a multi-core machine (at most 8); none on one core, where polling
    in another process would only add the cost of shipping requests and items. Grouping
    gets a process of its own by default on the same condition."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 8)


def _bool(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def bad_environment(exc: SettingsError) -> int:
    """A process that cannot start for its environment: each problem on stderr, exit 2."""
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    print("fix these environment variables (README, Configuration)", file=sys.stderr)
    return 2


def unreachable_store(exc: StoreError) -> int:
    """A command that needs Redis and cannot reach it: one line naming REDIS_URL, exit 1."""
    print(f"{exc} (REDIS_URL={os.environ.get('REDIS_URL') or 'unset: the embedded server'})",
          file=sys.stderr)
    return 1


def environment_problems(env) -> list[str]:
    """What is wrong with the AGG_* variables (worker's and web's alike), one line each.
    A bad value must stop a process at its start with this, not surface later as a 500
    on every page while /healthz says ok, or as a traceback."""
    problems = []

    def number(name, kind, low, high=None):
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            return
        try:
            value = kind(raw)
        except ValueError:
            problems.append(f"{name}: {raw!r} is not a {'whole ' if kind is int else ''}number")
            return
        if value < low or (high is not None and value > high):
            problems.append(f"{name}: {raw!r} must be from {low}" + (f" to {high}" if high else " up"))

    number("AGG_RETENTION_DAYS", int, 1)
    number("AGG_RETENTION_MAX_ITEMS", int, 1)
    number("AGG_POOL_SIZE", int, 1, 256)
    number("AGG_PARSE_PROCESSES", int, 0, 64)
    number("AGG_HEALTH_MAX_HEARTBEAT_AGE", float, 1)
    number("AGG_ADMIN_MAX_FAILURES", int, 1)
    number("AGG_ADMIN_FAILURE_WINDOW", float, 1)
    for name, allowed in (("AGG_DIGITS", ("arabic", "latin")),
                          ("AGG_MONTHS", ("gregorian", "levantine")),
                          ("AGG_HIJRI", ("1", "0", "true", "false", "yes", "no", "on", "off"))):
        raw = env.get(name)
        if raw and raw.strip().lower() not in allowed:
            problems.append(f"{name}: {raw!r} is not one of {', '.join(allowed)}")
    zone = env.get("AGG_TIMEZONE")
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"AGG_TIMEZONE: {zone!r} is not a time zone (an IANA name such as "
                            "Asia/Riyadh or Africa/Cairo)")
    public = env.get("AGG_PUBLIC_URL")
    if public:
        from urllib.parse import urlsplit

        parts = urlsplit(public.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"AGG_PUBLIC_URL: {public!r} is not an absolute http(s) URL "
                            "(https://news.example)")
    return problems


@dataclass(frozen=True)
class Settings:
    feeds_path: str = "feeds.yaml"
    redis_url: str | None = None  # None: embedded Redis under data_dir
    data_dir: str = "data"
    allow_private_networks: bool = False
    key_prefix: str = "agg"
    retention_days: int = 30  # items first seen longer ago are trimmed
    retention_max_items: int = 200_000  # and the timeline never holds more than this
    max_body_bytes: int = 10 * 1024 * 1024
    fetch_timeout: float = 20.0
    pool_size: int = 16  # polls at once
    per_host_limit: int = 2  # polls at once against one host
    parse_processes: int = 0  # processes fetching and reading feeds (parsepool.py); 0: the polling threads
    grouping_process: bool = False  # group in a process of its own (runner.GroupingProcess)
    timezone: str = "Asia/Riyadh"  # display only; stored times are UTC
    user_agent: str = field(
        default=f"ArabicNewsAggregator/{__version__} (+{PROJECT_URL})"
    )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        problems = environment_problems(env)
        if problems:
            raise SettingsError(problems)
        auto_processes = default_parse_processes()  # 0 on a one-core machine
        values = dict(
            feeds_path=env.get("AGG_FEEDS", "feeds.yaml"),
            redis_url=env.get("REDIS_URL") or None,
            data_dir=env.get("AGG_DATA_DIR", "data"),
            allow_private_networks=_bool(env.get("AGG_ALLOW_PRIVATE_NETWORKS")),
            key_prefix=env.get("AGG_KEY_PREFIX", "agg"),
            retention_days=int(env.get("AGG_RETENTION_DAYS", "30")),
            retention_max_items=int(env.get("AGG_RETENTION_MAX_ITEMS", "200000")),
            pool_size=int(env.get("AGG_POOL_SIZE", "16")),
            parse_processes=int(env.get("AGG_PARSE_PROCESSES") or auto_processes),
            grouping_process=(_bool(env["AGG_GROUPING_PROCESS"]) if env.get("AGG_GROUPING_PROCESS")
                              else auto_processes > 0),
            timezone=env.get("AGG_TIMEZONE", "Asia/Riyadh"),
        )
        values.update(overrides)
        return cls(**values)
