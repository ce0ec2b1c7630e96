"""A small fleet polled for real (feedserver on 127.0.0.1, real Redis, the production
update_source) into known states, for the /status, /metrics and alert tests.

    bbc        ok, 16 items
    skynews    ok, 16 items
    alarabiya  ok through a 301: a suggested URL edit
    cnn        HTTP 500 three polls running
    france24   410 Gone: disabled
    dead       nothing listens on its port: connect refused
    spare      enabled: false in feeds.yaml
"""
from __future__ import annotations

import random
import socket
from datetime import datetime, timedelta, timezone

import pytest

from aggregator.alerts import Alerter, Monitor
from aggregator.config import load_config
from aggregator.fetch import Fetcher
from aggregator.metrics import Recorder
from aggregator.settings import Settings
from aggregator.store import Store
from aggregator.update import Pipeline, update_source
from feedserver import Fault, Feed, FeedServer, ant_items

UTC = timezone.utc
T0 = datetime(2018, 3, 12, 18, 0, tzinfo=UTC)  # after every item in ant_sample.jsonl
NOW = T0 + timedelta(hours=1)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fleet_yaml(server: FeedServer, dead_port: int) -> str:
    u = server.url
    return f"""\
# the test fleet
defaults:
  interval: 10m
sources:
  - id: bbc
    url: {u('/bbc.xml')}
    title: بي بي سي عربي
  - id: skynews
    url: {u('/skynews.xml')}
    title: سكاي نيوز عربية
  - id: alarabiya
    url: {u('/redirect/alarabia.xml')}
    title: العربية
  - id: cnn
    url: {u('/cnn.xml')}
    title: CNN بالعربية
  - id: france24
    url: {u('/france24.xml')}
    title: فرانس 24
  - id: dead
    url: http://127.0.0.1:{dead_port}/feed.xml
    title: موقع متوقف
  - id: spare
    url: {u('/spare.xml')}
    title: احتياطي
    enabled: false
"""


def start_server() -> FeedServer:
    server = FeedServer().start()
    for outlet in ("BBC", "skynews", "alarabia", "CNN", "france24"):
        server.feeds[f"/{outlet.lower()}.xml"] = Feed(outlet, ant_items(outlet))
    server.feeds["/cnn.xml"].faults += [Fault(500), Fault(500), Fault(500)]
    server.feeds["/france24.xml"].faults.append(Fault(410))
    return server


def monitor_for(client, keys, settings: Settings, webhook: str | None = None,
                after: timedelta = timedelta(hours=1)) -> Monitor:
    recorder = Recorder(client, keys)
    return Monitor(recorder, Alerter(client, keys, settings, webhook=webhook, after=after,
                                     metrics=recorder))


def poll_fleet(client, keys, feeds_path, monitor: Monitor | None = None) -> dict:
    """Poll every enabled source at T0; cnn again at T0+10m and T0+30m. Returns reports."""
    settings = Settings(allow_private_networks=True, fetch_timeout=5.0)
    config = load_config(feeds_path)
    store = Store(client, keys)
    pipe = Pipeline(store=store, fetcher=Fetcher(settings), rng=random.Random(1),
                    monitor=monitor)
    if monitor is not None:
        monitor.enabled_sources = sum(s.enabled for s in config.sources)
    reports = {}
    by_id = {s.id: s for s in config.sources}
    for s in config.sources:
        if s.enabled:
            reports[s.id] = update_source(s, pipe, T0)
    for minutes in (10, 30):
        reports["cnn"] = update_source(by_id["cnn"], pipe, T0 + timedelta(minutes=minutes))
    pipe.fetcher.close()
    return reports


@pytest.fixture
def feeds_path(server, tmp_path):
    """feeds.yaml for the fleet of `server` (each test module defines its `server` fixture)."""
    p = tmp_path / "feeds.yaml"
    p.write_text(fleet_yaml(server, closed_port()), encoding="utf-8")
    return p
