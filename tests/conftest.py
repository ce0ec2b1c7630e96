"""Shared fixtures: a real Redis (REDIS_URL, else the embedded server) and fresh keys per test."""
from __future__ import annotations

import os
import uuid

import pytest
import redis

from aggregator.embedded import ensure_server, stop_server
from aggregator.keys import Keys

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """REDIS_URL when CI gives one, else an embedded server for this test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    data_dir = tmp_path_factory.mktemp("redis")
    sock = ensure_server(data_dir)
    yield f"unix://{sock}"
    stop_server(data_dir)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def keys(redis_client) -> Keys:
    """A unique prefix per test: tests never see each other's keys, and need no FLUSHDB."""
    k = Keys(prefix=f"t{uuid.uuid4().hex[:10]}")
    yield k
    for key in redis_client.scan_iter(f"{k.prefix}:*", count=1000):
        redis_client.delete(key)
