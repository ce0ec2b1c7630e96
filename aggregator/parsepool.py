"""Parse and normalise in worker processes: the CPU half of a poll, off the worker's GIL.

A cold poll spends two thirds of its CPU in feedparser/lxml and normalisation: pure
functions of the fetched bytes (update.read_feed). Threads fetch and store; these
processes read, so a many-core machine reads many feeds at once. It also keeps the C
parsers at arm's length: a body that crashes libxml2 or hangs it kills one pool process,
not the worker, and only that feed's poll fails (as `error`).

Each process serves one read at a time over its own pipe: a polling thread borrows an idle
process, sends the body and waits for the items. concurrent.futures' process pool cost the
worker ~1 ms of CPU per read in its queue threads, and a process dying there broke every
read in flight. How the processes start, end and take signals: helpers.py.
"""
from __future__ import annotations

import logging
import pickle
import queue
import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from .helpers import Helper
from .types import Item, Outcome, Source

log = logging.getLogger(__name__)

Reader = Callable[[Source, bytes, Mapping[str, str], str, datetime],
                  tuple[list[Item], Outcome, str | None]]
CRASHED = "the parser process died while reading this feed"
READ_TIMEOUT = 60.0  # seconds; the slowest real feed reads in well under one


def _serve(conn, reader: Reader | None) -> None:
    """A pool process: read what arrives until the worker's end of the pipe closes."""
    if reader is None:
        from .update import read_feed as reader
    while True:
        try:
            args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            reply = (True, reader(*args))
        except Exception as e:  # a bug in reading: raised again in the polling thread
            reply = (False, e)
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError):
            conn.send((False, RuntimeError(repr(reply[1])[:1000])))


class ParsePool:
    """read() has read_feed's signature and result; the work runs in `processes` processes,
    one read each at a time. A read that kills its process, or runs past `timeout`
    seconds, fails alone as Outcome.ERROR and the process is replaced."""

    def __init__(self, processes: int, reader: Reader | None = None,
                 timeout: float = READ_TIMEOUT):
        if processes < 1:
            raise ValueError("a ParsePool needs at least one process")
        self.processes = processes
        self.timeout = timeout
        self._reader = reader  # None: update.read_feed, imported in the process
        self._idle: queue.SimpleQueue[Helper] = queue.SimpleQueue()
        self._all: list[Helper] = []
        self._lock = threading.Lock()
        for _ in range(processes):
            self._idle.put(self._start())

    def _start(self) -> Helper:
        proc = Helper(_serve, (self._reader,), name="feed-reader")
        with self._lock:
            self._all.append(proc)
        return proc

    def _replace(self, proc: Helper) -> Helper:
        proc.stop(kill=True)
        with self._lock:
            self._all.remove(proc)
        return self._start()

    def read(self, source: Source, body: bytes, headers: Mapping[str, str], url: str,
             now: datetime) -> tuple[list[Item], Outcome, str | None]:
        proc = self._idle.get()
        try:
            proc.conn.send((source, body, headers, url, now))
            if not proc.conn.poll(self.timeout):
                proc = self._replace(proc)
                log.error("%s: reading the feed took longer than %ss", source.id, self.timeout)
                return [], Outcome.ERROR, f"reading the feed took longer than {self.timeout:g} s"
            ok, value = proc.conn.recv()
        except (EOFError, OSError):
            proc = self._replace(proc)
            log.error("%s: %s", source.id, CRASHED)
            return [], Outcome.ERROR, CRASHED
        finally:
            self._idle.put(proc)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        with self._lock:
            procs, self._all = self._all, []
        for proc in procs:
            proc.stop()
