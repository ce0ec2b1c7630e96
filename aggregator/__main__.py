"""Command line: `python -m aggregator run|stats|check-config|sources|poll`."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from dataclasses import replace
from datetime import datetime, timezone

from .config import no_config_to_run
from .errors import ConfigError, SettingsError, StoreError
from .settings import Settings, bad_environment, unreachable_store


def cmd_run(args, settings: Settings) -> int:
    """Worker and web app in one process: the quick start."""
    from werkzeug.serving import make_server

    from web import create_app

    from .runner import Shutdown, Worker, run_forever, wait_for_redis

    shutdown = Shutdown().install()
    wait_for_redis(settings, shutdown)
    if shutdown.requested:
        return 0
    try:  # before serving: an invalid first feeds.yaml stops the start, as worker.py does
        polling = Worker(settings)
    except ConfigError as e:
        return no_config_to_run(e)
    server = make_server(args.host, args.port, create_app(), threaded=True)
    web = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    worker = threading.Thread(target=run_forever, args=(settings, shutdown, polling),
                              name="worker")
    web.start()
    worker.start()
    logging.getLogger(__name__).info("serving on http://%s:%s/", args.host, server.server_port)
    while not shutdown.requested:
        shutdown.sleep(1)
    server.shutdown()
    worker.join()
    return 0


def stats(settings: Settings) -> dict:
    from .config import config_status, load_config_or_last_good
    from .schedule import for_url
    from .store import open_store

    store = open_store(settings)
    config, rejected = load_config_or_last_good(
        settings.feeds_path, lambda: store.last_good_config(settings.feeds_path))
    ids = [s.id for s in config.sources]
    states = store.load_states(ids)
    sources = {}
    for source in config.sources:
        st = for_url(source, states[source.id])  # an edited URL: not the old one's verdicts
        sources[source.id] = {
            "url": source.url,
            "items": store.count_items(source.id),
            "enabled": source.enabled and not st.disabled_reason,
            "last_status": st.last_status,
            "last_http_status": st.last_http_status,
            "errors": st.errors,
            "consecutive_failures": st.consecutive_failures,
            "polls": st.polls,
            "last_poll": st.last_poll.isoformat() if st.last_poll else None,
            "last_success": st.last_success.isoformat() if st.last_success else None,
            "next_poll": st.next_poll.isoformat() if st.next_poll else None,
            "retry_after_until": st.retry_after_until.isoformat() if st.retry_after_until
            else None,
            "last_error": st.last_error,
            "disabled_reason": st.disabled_reason,
            "suggested_url": st.suggested_url,
            "latency_ms": st.latency_ms,
        }
    return {
        "items": store.count_items(),
        "stories": store.r.zcard(store.keys.group_story_timeline),
        "config": config_status(config.path, rejected),
        "sources": sources,
    }


def cmd_stats(args, settings: Settings) -> int:
    data = stats(settings)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"items {data['items']}  stories {data['stories']}")
    if not data["config"]["valid"]:
        print(f"{data['config']['path']} is not valid; the last good config runs "
              "(sources below) until it is fixed:")
        for problem in data["config"]["problems"]:
            print(f"  {problem}")
    now = datetime.now(timezone.utc)
    owners = {_url_key(s["url"]): sid for sid, s in data["sources"].items()}
    for sid, s in data["sources"].items():
        status = (s["last_status"] or "-") + (f" {s['last_http_status']}"
                                              if s["last_http_status"] else "")
        print(f"  {sid:<28} {s['items']:>6} items  {status:<18} errors {s['errors']:>3}  "
              f"{next_poll_text(s, now)}")
        if s["suggested_url"]:
            owner = owners.get(_url_key(s["suggested_url"]))
            how = (f"already the URL of {owner}: remove one of the two" if owner
                   else "`sources moved --apply` writes it")
            print(f"  {'':<28} moved for good to {s['suggested_url']} ({how})")
    return 0


def next_poll_text(source: dict, now: datetime) -> str:
    """A `stats --json` source's next poll as an operator reads it: 'next in 4m 10s'."""
    if source.get("disabled_reason"):
        return f"stopped: {source['disabled_reason']}"
    if not source.get("enabled", True):
        return "disabled in feeds.yaml"
    if not source.get("next_poll"):
        return "next: at the worker's start"
    seconds = round((datetime.fromisoformat(source["next_poll"]) - now).total_seconds())
    if seconds <= 0:
        return f"next: due ({_span(-seconds)} ago)" if seconds < 0 else "next: now"
    return f"next in {_span(seconds)}"


def _url_key(url: str) -> str:
    """A URL as feeds.yaml compares them (scheme and host case-blind)."""
    from .config import normalize_url

    try:
        return normalize_url(url)
    except ValueError:
        return url


def _span(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h}h"] * bool(h) + [f"{m}m"] * bool(m) + [f"{s}s"] * bool(s and not h)
    return " ".join(parts) or "0s"


def cmd_check_config(args, settings: Settings) -> int:
    from .config import check_config_main

    return check_config_main(args.file or settings.feeds_path)


def cmd_poll(args, settings: Settings) -> int:
    """Poll one source now. --dry-run shows what would be stored and writes nothing."""
    from .runner import (GroupingLoop, build_pipeline, format_report, make_grouper,
                         startup_config, utcnow)
    from .schedule import for_url, skip_reason
    from .store import open_store
    from .update import update_source

    store = open_store(settings)
    config, _ = startup_config(settings, store, keep=not args.dry_run)
    source = next((s for s in config.sources if s.id == args.source), None)
    if source is None:
        print(f"no source {args.source!r} in {config.path}", file=sys.stderr)
        return 2
    reason = skip_reason(for_url(source, store.load_state(source.id)), utcnow())
    if reason:  # an operator's poll goes ahead, but not without saying what it overrides
        print(f"{source.id}: the worker is leaving it alone ({reason}); polling it anyway, "
              "as asked", file=sys.stderr)
    if args.dry_run:
        return dry_run(source, settings, store)
    pipe = build_pipeline(replace(settings, parse_processes=0))  # one feed: no pool to start
    report = update_source(source, pipe, utcnow())
    GroupingLoop(make_grouper(pipe.store, config.sources), monitor=pipe.monitor).drain()
    pipe.monitor.close()
    pipe.close()
    print(format_report(report))
    return 0 if report.outcome.is_success else 1


def dry_run(source, settings: Settings, store, out=None) -> int:
    """Fetch, parse and normalise one source with its stored validators, and show what a
    real poll would store: each item as new / changed / same (against the stored content
    hash) / dropped (by retention, so not stored again), the source state it would save,
    and when it would poll next. Reads Redis, writes nothing."""
    import random

    from .fetch import Fetcher
    from .runner import utcnow
    from .schedule import after_poll
    from .update import fetch_items

    out = out or sys.stdout
    state = store.load_state(source.id)
    now = utcnow()
    fetcher = Fetcher(settings)
    try:
        fetched = fetch_items(source, state, fetcher, now)
    finally:
        fetcher.close()
    r = fetched.result
    with store.r.pipeline(transaction=False) as p:
        for item in fetched.items:
            p.hget(store.keys.item(item.id), "content_hash")
            p.zscore(store.keys.trimmed, item.id)
        replies = p.execute() if fetched.items else []
    marks = ["dropped" if old is None and trimmed is not None  # by retention: not stored again
             else "new" if old is None else "changed" if old != item.content_hash else "same"
             for item, old, trimmed in zip(fetched.items, replies[::2], replies[1::2])]
    print(f"{source.id}: {fetched.outcome.value}"
          + (f" HTTP {r.http_status}" if r.http_status else "")
          + f" in {r.elapsed * 1000:.0f} ms"
          + (f" from {r.final_url}" if r.final_url != source.url else "")
          + (f" ({fetched.error})" if fetched.error else ""), file=out)
    print(f"dry run, nothing written: {len(fetched.items)} items, {marks.count('new')} new, "
          f"{marks.count('changed')} changed, {marks.count('same')} unchanged"
          + (f", {marks.count('dropped')} dropped by retention" if "dropped" in marks else ""),
          file=out)
    for item, mark in zip(fetched.items, marks):
        print(f"  [{mark:<7}] {item.published.isoformat(timespec='seconds')}  {item.id}  "
              f"{item.title}\n              {item.url}", file=out)
    new_state = after_poll(source, state, r, now, random.Random(), outcome=fetched.outcome)
    nxt = new_state.next_poll.isoformat(timespec="seconds") if new_state.next_poll else "never"
    print(f"state: last_status {new_state.last_status}, consecutive failures "
          f"{new_state.consecutive_failures}, next poll {nxt}"
          + (f", suggested URL {new_state.suggested_url}" if new_state.suggested_url else "")
          + (f", {new_state.disabled_reason}" if new_state.disabled_reason else ""), file=out)
    return 0 if fetched.outcome.is_success else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aggregator")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="worker and web app in one process")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("stats", help="items, stories and per-source health")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
    p = sub.add_parser("check-config", help="validate a feeds file")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_check_config)
    from .sources_cli import add_parser as add_sources_parser

    add_sources_parser(sub)
    p = sub.add_parser("poll", help="poll one source now")
    p.add_argument("source")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_poll)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return args.func(args, Settings.from_env())
    except ConfigError as e:
        return no_config_to_run(e)
    except SettingsError as e:
        return bad_environment(e)
    except StoreError as e:  # stats, poll, sources moved: Redis is down or unreachable
        return unreachable_store(e)
    except BrokenPipeError:
        # `stats | head` closed our stdout: not an error worth a traceback. Point stdout at
        # /dev/null so the interpreter's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
