"""The worker's helper processes: the feed-reading ones, which fetch and parse (parsepool.py),
and the grouping process (runner.GroupingProcess).

Each is forked from a fork server that has imported their modules once (forking the
worker itself would copy its threads' locks mid-use) and talks to the worker over a pipe
of its own. A helper ends at end-of-file on that pipe: when the worker closes its end,
or ends, however it ends (kill -9 included).

Ctrl-C and a service manager's SIGTERM reach the whole process group; the worker then
finishes its in-flight work, which needs its helpers, so they ignore both. multiprocessing's
exit handler also signals its children with SIGTERM and then joins them: the worker's ends
of the pipes are closed before that (a finalizer of higher priority), or a worker leaving
without closing them (an exception) would wait for ever.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.util
import signal
from collections.abc import Callable

PRELOAD = ["aggregator.update", "aggregator.runner", "aggregator.group"]


def _main(target: Callable[..., None], ends: list, args: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    target(*ends, *args)


class Helper:
    """target(conn, [replies,] *args) in a helper process; `conn` here is the worker's end."""

    def __init__(self, target: Callable[..., None], args: tuple = (), name: str = "helper",
                 replies: bool = False):
        """replies: the helper answers on a second, one-way pipe, `self.replies`, passed to
        it after `conn`. A thread blocked reading a socket keeps it open after another
        thread closes it, so with one pipe a thread waiting for replies would hide our end
        closing from the helper."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        self.conn, theirs = context.Pipe()
        ends = [theirs]
        if replies:
            self.replies, their_replies = context.Pipe(duplex=False)
            ends.append(their_replies)
        self.process = context.Process(target=_main, args=(target, ends, args), name=name,
                                       daemon=True)
        self.process.start()
        for end in ends:  # only the helper holds its ends: ours closing is its end-of-file
            end.close()
        self._close = multiprocessing.util.Finalize(self, self.conn.close, exitpriority=10)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def stop(self, kill: bool = False, timeout: float | None = 5.0) -> None:
        """Close our end (the helper's signal to finish), then wait for it."""
        self._close()
        if kill:
            self.process.kill()
        self.process.join(timeout)
