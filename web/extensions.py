"""Per-app services: the Redis client, the store, the grouper and the feeds config.

Created lazily on first use in each process (gunicorn forks after create_app, and a
Redis connection must not be shared across a fork)."""
from __future__ import annotations

from flask import Flask, current_app

from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.store import Store, connect

EXT = "aggregator"


class Services:
    def __init__(self, app: Flask):
        self.settings: Settings = app.config["AGG_SETTINGS"]
        self.keys = Keys(app.config.get("AGG_KEY_PREFIX", self.settings.key_prefix))
        self._client = app.config.get("REDIS_CLIENT")  # tests may pass a client
        self._store = None
        self._grouper = None
        self._config = None

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.client, self.keys)
        return self._store

    @property
    def grouper(self):
        if self._grouper is None:
            from aggregator.group import Grouper

            ranks = {s.id: s.rank for s in self.sources}
            self._grouper = Grouper(self.client, self.keys, source_rank=ranks)
        return self._grouper

    @property
    def sources(self):
        """Sources from feeds.yaml (the web app reads the same file as the worker)."""
        from aggregator.config import load_config

        path = current_app.config.get("AGG_FEEDS", self.settings.feeds_path)
        if self._config is None or self._config.path != str(path):
            self._config = load_config(path)
        return self._config.sources


def init_app(app: Flask) -> None:
    app.extensions[EXT] = Services(app)


def services() -> Services:
    return current_app.extensions[EXT]
