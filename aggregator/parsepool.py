"""Fetch and read feeds in helper processes: a poll's HTTP and parsing, off the worker's GIL.

A cold poll spends two thirds of its CPU in feedparser/lxml and normalisation, a warm one
(a 304) most of it in urllib3 and http.client. Both run here (update.fetch_and_read), in
`processes` processes with up to `threads` polls in flight each; the worker's polling
threads keep the decisions and the writes (schedule, metrics, store). With the HTTP in the
worker, its one GIL bounded a pass of 304s at about one core however many cores were idle.

It also keeps the C parsers at arm's length: a body that crashes libxml2 kills a helper,
not the worker. The polls that were in flight in it are sent once more to a fresh helper,
so the feed that killed two helpers fails alone (as `error`) and the others go on. A poll
running past `timeout` seconds fails too, and its helper is replaced the same way.

Each helper has two pipes of its own, for requests and for replies, which carry an id; one
thread per helper in the worker hands replies to the waiting polls.
concurrent.futures' process pool cost the worker ~1 ms of CPU per call in its queue
threads, and a process dying there broke every call in flight. How the processes start,
end and take signals: helpers.py.
"""
from __future__ import annotations

import itertools
import logging
import os
import pickle
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

from .helpers import Helper
from .settings import Settings
from .types import FetchResult, Outcome, Source, SourceState

if TYPE_CHECKING:
    from .fetch import Fetcher
    from .update import Fetched

log = logging.getLogger(__name__)

Task = Callable[["Fetcher", Source, SourceState, datetime], "Fetched"]
CRASHED = "the feed-reading process died while polling this feed"
READ_TIMEOUT = 60.0  # seconds for reading a fetched body; the slowest real feed needs < 1


def _serve(conn, replies, settings: Settings, task: Task | None, threads: int) -> None:
    """A helper: run each request in one of `threads` threads until the worker's end of the
    pipe closes, then leave at once (the worker no longer waits for what is in flight)."""
    from .fetch import Fetcher

    if task is None:
        from .update import fetch_and_read as task
    fetcher = Fetcher.for_polls(settings)
    send = threading.Lock()

    def run(request_id: int, args: tuple) -> None:
        try:
            reply = (request_id, True, task(fetcher, *args))
        except Exception as e:  # a bug: raised again in the polling thread
            reply = (request_id, False, e)
        with send:
            try:
                replies.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError):
                replies.send((request_id, False, RuntimeError(repr(reply[2])[:1000])))
            except OSError:  # the worker is gone
                pass

    executor = ThreadPoolExecutor(threads, thread_name_prefix="poll")
    while True:
        try:
            request_id, args = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        executor.submit(run, request_id, args)


class _Call:
    __slots__ = ("args", "done", "reply", "resent")

    def __init__(self, args: tuple):
        self.args = args
        self.done = threading.Event()
        self.reply: tuple[bool, object] | None = None
        self.resent = False


class _Process:
    """One helper, its calls in flight, and the thread receiving its replies."""

    def __init__(self, helper: Helper):
        self.helper = helper
        self.sending = threading.Lock()
        self.calls: dict[int, _Call] = {}  # in flight, by request id


class ParsePool:
    """fetch_items() has update.fetch_items' result: the fetch and the read run in
    `processes` helpers (update.fetch_and_read, or `task` in tests)."""

    def __init__(self, processes: int, settings: Settings | None = None,
                 task: Task | None = None, timeout: float | None = None):
        if processes < 1:
            raise ValueError("a ParsePool needs at least one process")
        self.settings = settings or Settings()
        self.processes = processes
        # The fetch has its own deadline (twice fetch_timeout, fetch.py); then the read.
        self.timeout = timeout if timeout is not None else \
            2 * self.settings.fetch_timeout + READ_TIMEOUT
        self._task = task
        self._ids = itertools.count()
        self._lock = threading.Condition()  # the process list and every process's calls
        self._procs: list[_Process] = []
        self._closed = False
        for _ in range(processes):
            self._start()

    def _start(self) -> None:
        helper = Helper(_serve, (self.settings, self._task, self.settings.pool_size),
                        name="feed-reader", replies=True)
        proc = _Process(helper)
        with self._lock:
            self._procs.append(proc)
            self._lock.notify_all()
        threading.Thread(target=self._receive, args=(proc,), name="feed-reader-replies",
                         daemon=True).start()

    def _send(self, call: _Call) -> None:
        with self._lock:
            while not self._procs:  # one being replaced
                if self._closed:
                    call.reply = (True, None)
                    call.done.set()
                    return
                self._lock.wait(1.0)
            proc = min(self._procs, key=lambda p: len(p.calls))  # the least busy
            request_id = next(self._ids)
            proc.calls[request_id] = call
        try:
            with proc.sending:
                proc.helper.conn.send((request_id, call.args))
        except OSError:
            pass  # it died under us: its receiver sends the call again

    def _receive(self, proc: _Process) -> None:
        replies = proc.helper.replies
        while True:
            try:
                request_id, ok, value = replies.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                call = proc.calls.pop(request_id, None)
            if call is not None:
                call.reply = (ok, value)
                call.done.set()
        replies.close()
        self._ended(proc)

    def _ended(self, proc: _Process) -> None:
        """The helper ended: it crashed, was retired by _retire_with, or we are closing."""
        with self._lock:
            crashed = proc in self._procs
            if crashed:
                self._procs.remove(proc)
            calls, proc.calls = list(proc.calls.values()), {}
            # our end closed: close(), or the exit handler's finalizer (helpers.py)
            closing = self._closed or proc.helper.conn.closed
        proc.helper.stop(kill=True, timeout=1.0)
        if closing:
            for call in calls:
                call.reply = (True, None)
                call.done.set()
            return
        if crashed:
            log.error("a feed-reading process died with %d polls in flight; starting another",
                      len(calls))
            self._start()
        threading.Thread(target=self._resend, args=(calls,), name="feed-reader-resend",
                         daemon=True).start()

    def _resend(self, calls: list[_Call]) -> None:
        """Send the calls of a helper that died again, one after the other, so that only
        the one that kills a helper again is in flight when it does. A call in flight in
        two helpers that died fails."""
        for call in calls:
            if call.resent:
                call.reply = (True, _failed(call.args[0], CRASHED))
                call.done.set()
                continue
            call.resent = True
            self._send(call)
            call.done.wait(self.timeout)

    def fetch_items(self, source: Source, state: SourceState, now: datetime) -> Fetched:
        call = _Call((source, state, now))
        self._send(call)
        if not call.done.wait(self.timeout):
            self._retire_with(call)
            log.error("%s: polling the feed took longer than %gs", source.id, self.timeout)
            return _failed(source, f"polling the feed took longer than {self.timeout:g} s")
        ok, value = call.reply
        if not ok:
            raise value
        if value is None:
            return _failed(source, "the worker is stopping")
        return value

    def _retire_with(self, call: _Call) -> None:
        """Replace the helper running a call past its time; its other calls are sent
        again when its receiver sees it end."""
        with self._lock:
            proc = next((p for p in self._procs if call in p.calls.values()), None)
            if proc is None:
                return
            self._procs.remove(proc)
            proc.calls = {i: c for i, c in proc.calls.items() if c is not call}
        proc.helper.process.kill()
        self._start()

    def close(self) -> None:
        with self._lock:  # a call sent from now on fails at once, as "the worker is stopping"
            self._closed = True
            self._lock.notify_all()
            procs, self._procs = self._procs, []
        for proc in procs:
            proc.helper.stop()


def _failed(source: Source, error: str) -> Fetched:
    from .update import Fetched

    result = FetchResult(outcome=Outcome.ERROR, url=source.url, final_url=source.url,
                         error=error)
    return Fetched(result, Outcome.ERROR, [], error)
