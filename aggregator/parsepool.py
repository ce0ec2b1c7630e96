"""Parse and normalise in worker processes: the CPU half of a poll, off the worker's GIL.

A cold poll spends two thirds of its CPU in feedparser/lxml and normalisation: pure
functions of the fetched bytes (update.read_feed). Threads fetch and store; these
processes read, so a many-core machine reads many feeds at once. It also keeps the C
parsers at arm's length: a body that crashes libxml2 kills one pool process, not the
worker, and that feed's poll fails as `error` while the others go on.

Processes come from a fork server that has imported the parsing modules once: forking the
worker itself would copy its threads' locks (APScheduler, Redis connections) mid-use. They
exit with the worker, however it ends (kill -9 included): each watches a pipe whose only
writer is the worker.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

from .types import Item, Outcome, Source

log = logging.getLogger(__name__)

Reader = Callable[[Source, bytes, Mapping[str, str], str, datetime],
                  tuple[list[Item], Outcome, str | None]]
CRASHED = "the parser process died while reading this feed"


def _exit_with(lifeline) -> None:
    """Pool-process initializer: end this process when the worker's end of `lifeline`
    closes. A pool process blocks on a queue it also holds the writing end of, so it would
    never notice on its own."""

    def watch() -> None:
        try:
            lifeline.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class ParsePool:
    """read() has read_feed's signature and result; the work runs in `processes` processes.

    A process that dies breaks every read in flight on the pool, not only the culprit's.
    Those reads are tried again one at a time in a one-process quarantine pool, so the
    feed that fails is the one that kills a process on its own."""

    def __init__(self, processes: int, reader: Reader | None = None):
        if processes < 1:
            raise ValueError("a ParsePool needs at least one process")
        if reader is None:
            from .update import read_feed as reader
        self.processes = processes
        self._reader = reader
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["aggregator.update"])
        # the worker keeps the writing end and never writes: it closes when the worker ends
        self._lifeline, self._lifeline_w = self._context.Pipe(duplex=False)
        self._lock = threading.Lock()
        self._executor = self._new_executor(processes)
        self._quarantine_lock = threading.Lock()
        self._quarantine: ProcessPoolExecutor | None = None

    def _new_executor(self, processes: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(processes, mp_context=self._context,
                                   initializer=_exit_with, initargs=(self._lifeline,))

    def read(self, source: Source, body: bytes, headers: Mapping[str, str], url: str,
             now: datetime) -> tuple[list[Item], Outcome, str | None]:
        args = (source, body, headers, url, now)
        executor = self._executor
        try:
            return executor.submit(self._reader, *args).result()
        except BrokenProcessPool:
            self._replace(executor)
        with self._quarantine_lock:
            if self._quarantine is None:
                self._quarantine = self._new_executor(1)
            try:
                return self._quarantine.submit(self._reader, *args).result()
            except BrokenProcessPool:
                self._quarantine.shutdown(wait=False, cancel_futures=True)
                self._quarantine = None
        log.error("%s: %s", source.id, CRASHED)
        return [], Outcome.ERROR, CRASHED

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:  # the first read to notice replaces it
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor(self.processes)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._quarantine_lock:
            if self._quarantine is not None:
                self._quarantine.shutdown(wait=True)
                self._quarantine = None
