"""Per-app services: the Redis client, the store, the grouper and the feeds config.

Created lazily on first use in each process (gunicorn forks after create_app, and a
Redis connection must not be shared across a fork)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from flask import Flask, current_app

from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.store import Store, connect

EXT = "aggregator"
CONFIG_CHECK_EVERY = 1.0  # seconds between stat() calls on feeds.yaml


class Services:
    def __init__(self, app: Flask):
        self.settings: Settings = app.config["AGG_SETTINGS"]
        self.keys = Keys(app.config.get("AGG_KEY_PREFIX", self.settings.key_prefix))
        self._client = app.config.get("REDIS_CLIENT")  # tests may pass a client
        self._store = None
        self._grouper = None
        self._watcher = None
        self._config_lock = threading.Lock()
        self._config_checked = 0.0

    @property
    def client(self):
        if self._client is None:
            # a reader waits seconds for a stalled store, not the worker's 30 s x retries
            self._client = connect(self.settings, timeout=5.0, retries=0)
        return self._client

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.client, self.keys)
        return self._store

    @property
    def grouper(self):
        """The grouper's reads. Outlet ranks only matter to grouping (the worker's), so
        the pages do not depend on feeds.yaml validating."""
        if self._grouper is None:
            from aggregator.group import Grouper

            self._grouper = Grouper(self.client, self.keys)
        return self._grouper

    @property
    def sources(self):
        """Sources from feeds.yaml (the web app reads the same file as the worker) and
        follows its edits as the worker does: a valid edit shows within a second, an
        invalid one is logged and the last good list stays (`config_rejected` says why);
        started while the file does not validate, the app runs the last good config."""
        from aggregator.config import ConfigWatcher, load_config_or_last_good

        path = str(current_app.config.get("AGG_FEEDS", self.settings.feeds_path))
        with self._config_lock:
            if self._watcher is None or self._watcher.path != path:
                config, rejected = load_config_or_last_good(
                    path, lambda: self.store.last_good_config(path))
                for problem in rejected.problems if rejected else ():
                    current_app.logger.error("%s; running the last good config", problem)
                if rejected is None:
                    self._keep_good(config)
                self._watcher = ConfigWatcher(path, on_change=self._keep_good,
                                              log=current_app.logger, initial=config,
                                              rejected=rejected)
                self._config_checked = time.monotonic()
            elif time.monotonic() - self._config_checked > CONFIG_CHECK_EVERY:
                # Stamped when checked, not when read: readers more often than once a
                # second must not postpone the check forever.
                self._watcher.check()
                self._config_checked = time.monotonic()
            return self._watcher.current.sources

    @property
    def config_path(self) -> str:
        _ = self.sources
        return self._watcher.path

    @property
    def config_rejected(self):
        """aggregator.config.Rejected while feeds.yaml does not validate, else None."""
        _ = self.sources  # the edit check
        return self._watcher.rejected

    def _keep_good(self, config) -> None:
        self.store.keep_good_config(config, datetime.now(timezone.utc))

    def config_digest(self) -> str:
        """sha256 of the feeds.yaml in use (after the same edit check as `sources`): cached
        pages name outlets and filters from it, so they are valid for one digest only."""
        _ = self.sources  # the edit check
        return self._watcher.current.digest


def init_app(app: Flask) -> None:
    app.extensions[EXT] = Services(app)


def services() -> Services:
    return current_app.extensions[EXT]
