"""Grouping in a process of its own (runner.GroupingProcess), against the real Redis: it
groups what the polls queue, stops after a last pass, is started again if it dies, and
ends with its owner."""
from __future__ import annotations

import gc
import os
import signal
import threading
import time
import weakref
from datetime import timedelta

from aggregator.group import Grouper
from aggregator.runner import GroupingProcess, SurvivorFreezer
from aggregator.settings import Settings
from aggregator.types import Source
from processes import ends_when_its_owner_exits, ends_with_its_owner_killed
from test_group import CRASH, OTHER, T0, make_item, save

SOURCES = [Source(id=s, url=f"https://{s}.example/feed", title=s, rank=i)
           for i, s in enumerate(["skynews", "france24", "alarabia", "BBC", "CNN"])]


def settings(redis_url, keys) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=keys.prefix, grouping_process=True)


def test_groups_the_queue_and_drains_it_when_stopped(redis_client, redis_url, keys):
    save(redis_client, keys, CRASH + [OTHER])
    grouping = GroupingProcess(settings(redis_url, keys), SOURCES)
    stop = threading.Event()
    thread = grouping.start(stop)
    grouping.notify()
    stop.set()  # at once: the last pass still groups everything queued
    thread.join(60)
    assert not thread.is_alive()
    g = Grouper(redis_client, keys)
    stories = {it.id: g.story_of(it.id) for it in CRASH + [OTHER]}
    assert len({stories[it.id] for it in CRASH}) == 1
    assert stories[OTHER.id] not in {stories[it.id] for it in CRASH}
    assert redis_client.zcard(keys.group_pending) == 0


def test_a_grouping_process_that_dies_is_started_again(redis_client, redis_url, keys):
    grouping = GroupingProcess(settings(redis_url, keys), SOURCES)
    grouping.RESTART_AFTER = 0.2
    stop = threading.Event()
    thread = grouping.start(stop)
    try:
        first = grouping.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while grouping.pid == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert grouping.pid != first
        later = make_item("late-1", "BBC", OTHER.title, OTHER.summary_text, T0 + timedelta(hours=2))
        save(redis_client, keys, [later])
        grouping.notify()
        while not redis_client.hget(keys.group_is, later.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert redis_client.hget(keys.group_is, later.id)
    finally:
        stop.set()
        thread.join(60)


def test_ctrl_c_and_sigterm_to_the_process_group_leave_grouping_to_the_worker(redis_client, redis_url, keys):
    # the worker stops grouping after its in-flight polls, whose items must be grouped
    grouping = GroupingProcess(settings(redis_url, keys), SOURCES)
    stop = threading.Event()
    thread = grouping.start(stop)
    try:
        pid = grouping.pid
        time.sleep(1.0)  # started and waiting
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        save(redis_client, keys, [OTHER])
        grouping.notify()
        deadline = time.monotonic() + 20
        while not redis_client.hget(keys.group_is, OTHER.id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert redis_client.hget(keys.group_is, OTHER.id) and grouping.pid == pid
    finally:
        stop.set()
        thread.join(60)


def _owner_grouping(redis_url, keys) -> str:
    """A worker script that starts a grouping process and prints its pid."""
    return (
        "import threading, time\n"
        "from aggregator.runner import GroupingProcess\n"
        "from aggregator.settings import Settings\n"
        f"g = GroupingProcess(Settings(redis_url={redis_url!r}, key_prefix={keys.prefix!r}), [])\n"
        "g.start(threading.Event())\n"
        "print(g.pid, flush=True)\n"
    )


def test_the_grouping_process_ends_with_an_owner_killed_with_sigkill(redis_url, keys):
    assert ends_with_its_owner_killed(_owner_grouping(redis_url, keys) + "time.sleep(60)\n")


def test_a_worker_leaving_without_stopping_grouping_still_exits(redis_url, keys):
    assert ends_when_its_owner_exits(
        _owner_grouping(redis_url, keys)
        + "time.sleep(1.5)  # up and ignoring SIGTERM\n"
        + "raise RuntimeError('a bug before stop')\n"
    )


class _Node:
    pass


def test_survivor_freezer_hides_survivors_and_still_frees_them():
    # The grouping process freezes what survives each batch (its working set) so full
    # collections stop walking it: dropped objects must still go, at once by reference
    # counting, and a dropped reference cycle at the next full collection.
    freezer = SurvivorFreezer()
    freezer.FULL_EVERY = 3
    try:
        plain = _Node()
        plain_ref = weakref.ref(plain)
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        cycle_ref = weakref.ref(a)
        freezer.after_batch()  # 1: both survive and are frozen
        assert gc.get_freeze_count() > 0
        del plain
        assert plain_ref() is None
        del a, b
        freezer.after_batch()  # 2
        gc.collect()
        assert cycle_ref() is not None  # frozen: out of the collector's sight
        freezer.after_batch()  # 3 = FULL_EVERY: unfreeze and collect everything
        assert cycle_ref() is None
    finally:
        gc.unfreeze()
