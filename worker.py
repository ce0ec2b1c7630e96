"""The polling worker. `python worker.py` runs until SIGINT/SIGTERM; `--once` polls every
enabled source once and exits (non-zero only if every source failed)."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from aggregator.runner import run_forever, run_once, wait_for_redis
from aggregator.settings import Settings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="poll every source once and exit")
    parser.add_argument("--feeds", help="feeds file (default: $AGG_FEEDS or ./feeds.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = Settings.from_env(**({"feeds_path": args.feeds} if args.feeds else {}))
    if args.once:
        return run_once(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    wait_for_redis(settings, stop)
    if not stop.is_set():
        run_forever(settings, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
