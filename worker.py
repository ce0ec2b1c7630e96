"""The polling worker. `python worker.py` runs until SIGINT/SIGTERM; `--once` polls every
enabled source once and exits (non-zero only if every source failed)."""
from __future__ import annotations

import argparse
import logging
import sys

from aggregator.config import no_config_to_run
from aggregator.errors import ConfigError, SettingsError, StoreError
from aggregator.runner import Shutdown, run_forever, run_once, wait_for_redis
from aggregator.settings import Settings, bad_environment, unreachable_store


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
    try:
        settings = Settings.from_env(**({"feeds_path": args.feeds} if args.feeds else {}))
        if args.once:
            return run_once(settings)
        shutdown = Shutdown().install()
        wait_for_redis(settings, shutdown)
        if not shutdown.requested:
            run_forever(settings, shutdown)
    except ConfigError as e:
        return no_config_to_run(e)
    except SettingsError as e:
        return bad_environment(e)
    except StoreError as e:  # --once: Redis is down or unreachable (the daemon waits for it)
        return unreachable_store(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
