"""Command line: `python -m aggregator run|stats|check-config|poll`."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading

from .settings import Settings


def cmd_run(args, settings: Settings) -> int:
    """Worker and web app in one process: the quick start."""
    from werkzeug.serving import make_server

    from web import create_app

    from .runner import Shutdown, run_forever, wait_for_redis

    shutdown = Shutdown().install()
    wait_for_redis(settings, shutdown)
    if shutdown.requested:
        return 0
    server = make_server(args.host, args.port, create_app(), threaded=True)
    web = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    worker = threading.Thread(target=run_forever, args=(settings, shutdown), name="worker")
    web.start()
    worker.start()
    logging.getLogger(__name__).info("serving on http://%s:%s/", args.host, server.server_port)
    while not shutdown.requested:
        shutdown.sleep(1)
    server.shutdown()
    worker.join()
    return 0


def stats(settings: Settings) -> dict:
    from .config import load_config
    from .keys import Keys
    from .store import Store, connect

    config = load_config(settings.feeds_path)
    store = Store(connect(settings), Keys(settings.key_prefix))
    ids = [s.id for s in config.sources]
    states = store.load_states(ids)
    sources = {}
    for source in config.sources:
        st = states[source.id]
        sources[source.id] = {
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
        "sources": sources,
    }


def cmd_stats(args, settings: Settings) -> int:
    data = stats(settings)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"items {data['items']}  stories {data['stories']}")
    for sid, s in data["sources"].items():
        print(f"  {sid:<28} {s['items']:>6} items  {s['last_status'] or '-':<14} "
              f"errors {s['errors']:>3}  next {s['next_poll'] or '-'}")
    return 0


def cmd_check_config(args, settings: Settings) -> int:
    from .config import check_config_main

    return check_config_main(args.file or settings.feeds_path)


def cmd_poll(args, settings: Settings) -> int:
    """Poll one source now. --dry-run shows what would be stored and writes nothing."""
    from .config import load_config
    from .keys import Keys
    from .runner import GroupingLoop, build_pipeline, format_report, make_grouper, utcnow
    from .store import Store, connect
    from .update import fetch_items, update_source

    config = load_config(settings.feeds_path)
    source = next((s for s in config.sources if s.id == args.source), None)
    if source is None:
        print(f"no source {args.source!r} in {config.path}", file=sys.stderr)
        return 2
    if args.dry_run:
        from .fetch import Fetcher

        store = Store(connect(settings), Keys(settings.key_prefix))
        fetched = fetch_items(source, store.load_state(source.id), Fetcher(settings), utcnow())
        r = fetched.result
        print(f"{source.id}: {fetched.outcome.value} HTTP {r.http_status} in {r.elapsed:.2f}s"
              + (f" ({fetched.error})" if fetched.error else ""))
        for item in fetched.items:
            print(f"  {item.published.isoformat()}  {item.id}  {item.title}\n    {item.url}")
        return 0 if fetched.outcome.is_success else 1
    pipe = build_pipeline(settings)
    report = update_source(source, pipe, utcnow())
    GroupingLoop(make_grouper(pipe.store, config.sources)).drain()
    print(format_report(report))
    return 0 if report.outcome.is_success else 1


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
    p = sub.add_parser("poll", help="poll one source now")
    p.add_argument("source")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_poll)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return args.func(args, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
