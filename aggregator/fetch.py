"""HTTP: conditional GET with caps, an SSRF guard, a redirect policy, and one Outcome per poll.

We fetch; the parser only parses. urllib3 gives us connection pooling and streaming, and
we own everything policy-shaped: validators, body cap, redirects, address checks and the
classification of failures that scheduling is decided from.
"""
from __future__ import annotations

import hashlib
import heapq
import ipaddress
import os
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    IncompleteRead,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from .settings import Settings
from .types import FetchResult, Outcome, SourceState

UTC = timezone.utc
MAX_REDIRECTS = 5
PERMANENT_REDIRECTS = {301, 308}
CHUNK = 64 * 1024


class BlockedAddress(Exception):
    """The SSRF guard refused an address (internal: becomes Outcome.BLOCKED)."""


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def vet_host(host: str, port: int, allow_private: bool) -> str:
    """Resolve once and return the address to connect to, refusing non-global ones.

    Connecting to the very address we checked (not re-resolving) closes the DNS-rebinding
    gap between the check and the connection.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NameResolutionError(host, None, e) from e
    addresses = [info[4][0] for info in infos]
    if not allow_private:
        bad = [a for a in addresses if not is_public_address(a)]
        if bad:
            raise BlockedAddress(
                f"{host} resolves to non-public address {bad[0]}; "
                "set AGG_ALLOW_PRIVATE_NETWORKS=1 to allow it"
            )
    return addresses[0]


# The deadline of the fetch running on this thread (time.monotonic()), for getresponse.
_DEADLINE = threading.local()


class _Alarm:
    __slots__ = ("at", "sock", "fired", "cancelled")

    def __init__(self, at: float, sock):
        self.at, self.sock, self.fired, self.cancelled = at, sock, False, False

    def __lt__(self, other: "_Alarm") -> bool:
        return self.at < other.at


class _Watchdog:
    """One thread per process that shuts down sockets whose fetch deadline passed.

    A threading.Timer per fetch started a thread per poll (~100 µs each, a tenth of a
    304 poll's CPU); arming this costs a heap push under a lock."""

    def __init__(self):
        self._cond = threading.Condition()
        self._heap: list[_Alarm] = []
        self._pid = None

    def arm(self, at: float, sock) -> _Alarm:
        alarm = _Alarm(at, sock)
        with self._cond:
            if self._pid != os.getpid():  # first use in this process (or after a fork)
                self._pid = os.getpid()
                self._heap = []
                threading.Thread(target=self._run, name="fetch-deadlines", daemon=True).start()
            heapq.heappush(self._heap, alarm)
            if self._heap[0] is alarm:
                self._cond.notify()
        return alarm

    def disarm(self, alarm: _Alarm) -> None:
        with self._cond:  # the alarm stays in the heap until its time; it is just skipped
            alarm.cancelled = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0].at > time.monotonic():
                    self._cond.wait(self._heap[0].at - time.monotonic() if self._heap else None)
                alarm = heapq.heappop(self._heap)
                if alarm.cancelled:
                    continue
                alarm.fired = True
            try:
                alarm.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


_WATCHDOG = _Watchdog()


class _GuardMixin:
    allow_private = False

    def _new_conn(self):  # urllib3 calls this for every new socket, at every redirect hop
        host = self._dns_host
        self._dns_host = vet_host(host, self.port, self.allow_private)
        try:
            return super()._new_conn()
        finally:
            self._dns_host = host

    def getresponse(self):
        """Status line and headers within the fetch deadline. http.client reads them line by
        line and every recv renews the read timeout, so a server sending a header line
        every few seconds held a poll thread for as long as it liked (up to 100 headers of
        64 KiB each): at the deadline the socket is shut down under the reader."""
        at = getattr(_DEADLINE, "at", None)
        sock = getattr(self, "sock", None)
        if at is None or sock is None:
            return super().getresponse()
        alarm = _WATCHDOG.arm(at, sock)
        try:
            resp = super().getresponse()
        finally:
            _WATCHDOG.disarm(alarm)
        if alarm.fired:  # EOF from the shutdown can end the headers "normally"
            resp.close()
            raise TimeoutError("response headers not received within the time limit")
        return resp


def _pool_manager(settings: Settings, maxsize: int) -> urllib3.PoolManager:
    allow = settings.allow_private_networks

    class GuardedHTTP(_GuardMixin, HTTPConnection):
        allow_private = allow

    class GuardedHTTPS(_GuardMixin, HTTPSConnection):
        allow_private = allow

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTP

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPS

    pm = urllib3.PoolManager(num_pools=256, maxsize=maxsize, block=False)
    pm.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
    return pm


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After is delta-seconds or an HTTP-date; anything else is ignored."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when.astimezone(UTC), now)


def conditional_headers(state: SourceState) -> dict[str, str]:
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    return headers


def classify_status(status: int) -> Outcome:
    if status == 304:
        return Outcome.NOT_MODIFIED
    if 200 <= status < 300:
        return Outcome.OK
    if status == 410:
        return Outcome.GONE
    if status == 429:
        return Outcome.RATE_LIMITED
    if 400 <= status < 500:
        return Outcome.HTTP_4XX
    return Outcome.HTTP_5XX


def classify_exception(exc: BaseException) -> Outcome:
    if isinstance(exc, BlockedAddress):
        return Outcome.BLOCKED
    if isinstance(exc, NameResolutionError):
        return Outcome.DNS
    if isinstance(exc, NewConnectionError):  # before timeouts: urllib3 subclasses it from one
        return Outcome.CONNECT
    if isinstance(exc, (ConnectTimeoutError, ReadTimeoutError, TimeoutError, socket.timeout)):
        return Outcome.TIMEOUT
    if isinstance(exc, (SSLError, ssl.SSLError)):
        return Outcome.TLS
    if isinstance(exc, (ProtocolError, DecodeError, ConnectionError)):
        return Outcome.PROTOCOL
    if isinstance(exc, HTTPError):
        return Outcome.CONNECT
    return Outcome.ERROR


def _causes(exc: BaseException):
    """exc, then what it wraps: urllib3 keeps the socket's error in args or as the cause."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(c for c in (e.__cause__, e.__context__) if c is not None)


def describe_exception(exc: BaseException, url: str, timeout: float) -> str:
    """What an operator reads on the sources page and in alerts for a failed fetch: what
    happened, in a few words, instead of urllib3's nested reprs (ProtocolError: ('Connection
    aborted.', ConnectionResetError(104, ...))). The exception's type stays at the end, for
    searching logs. Pure."""
    where = urlsplit(url).netloc or url
    kind = type(exc).__name__
    for e in _causes(exc):
        if isinstance(e, BlockedAddress):
            return str(e)
        if isinstance(e, NameResolutionError):
            return f"host name not found: {urlsplit(url).hostname} ({kind})"
        if isinstance(e, ConnectionRefusedError):
            return f"connection refused by {where} ({kind})"
        if isinstance(e, ConnectionResetError):
            return f"{where} reset the connection ({kind})"
        if isinstance(e, IncompleteRead):
            return (f"the response ended early: {e.partial:,} bytes received, "
                    f"{e.expected:,} more expected ({kind})")
        if isinstance(e, ConnectTimeoutError) and not isinstance(e, NewConnectionError):
            return f"no connection to {where} within {timeout:g} s ({kind})"
        if isinstance(e, (ReadTimeoutError, TimeoutError, socket.timeout)):
            return f"{where} sent nothing for {timeout:g} s ({kind})"
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate refused: {e.verify_message} ({kind})"
        if isinstance(e, ssl.SSLError) and e.reason:
            return f"TLS handshake failed: {e.reason.lower().replace('_', ' ')} ({kind})"
        if isinstance(e, OSError) and e.strerror:  # unreachable network, and the like
            return f"cannot connect to {where}: {e.strerror} ({kind})"
    return f"{kind}: {exc}"


def _discard(resp) -> None:
    """Reuse the connection only when the unwanted body is small and of known length;
    an error page or redirect body of unknown size is not worth reading."""
    length = resp.headers.get("Content-Length")
    if resp.status == 304 or (length and length.isdigit() and int(length) <= CHUNK):
        resp.drain_conn()
    else:
        resp.close()
    resp.release_conn()


class Fetcher:
    """One per process: it owns the connection pools (keep-alive across polls)."""

    def __init__(self, settings: Settings, maxsize: int | None = None):
        self.settings = settings
        self.timeout = urllib3.Timeout(connect=min(10.0, settings.fetch_timeout),
                                       read=settings.fetch_timeout)
        self.pool = _pool_manager(settings, maxsize or max(4, settings.per_host_limit))
        self.base_headers = {
            "User-Agent": settings.user_agent,
            "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
                      "text/xml;q=0.9, */*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }

    @classmethod
    def for_polls(cls, settings: Settings) -> "Fetcher":
        """The fetcher of a process that polls (the worker, a feed-reading process): a
        pooled connection for each poll it may have in flight."""
        return cls(settings, maxsize=max(settings.per_host_limit, settings.pool_size))

    def fetch(self, url: str, state: SourceState, now: datetime) -> FetchResult:
        started = time.monotonic()
        deadline = started + self.settings.fetch_timeout * 2  # bound slow-drip bodies too
        headers = self.base_headers | conditional_headers(state)
        current, hops, permanent, chain_permanent = url, 0, None, True
        _DEADLINE.at = deadline
        try:
            while True:
                resp = self.pool.request(
                    "GET", current, headers=headers, redirect=False, retries=False,
                    preload_content=False, timeout=self.timeout,
                )
                if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    _discard(resp)
                    hops += 1
                    if hops > MAX_REDIRECTS:
                        return self._result(Outcome.TOO_MANY_REDIRECTS, url, current, started,
                                            http_status=resp.status,
                                            error=f"more than {MAX_REDIRECTS} redirects")
                    target = urljoin(current, resp.headers["Location"])
                    if urlsplit(target).scheme not in ("http", "https"):
                        return self._result(Outcome.BLOCKED, url, current, started,
                                            http_status=resp.status,
                                            error=f"redirect to unsupported URL {target[:200]}")
                    # Only an unbroken chain of permanent hops from the configured URL is
                    # a suggested edit; a temporary hop means "keep polling the old URL".
                    chain_permanent = chain_permanent and resp.status in PERMANENT_REDIRECTS
                    if chain_permanent:
                        permanent = target
                    current = target
                    continue
                break
            status = resp.status
            outcome = classify_status(status)
            resp_headers = {k.lower(): v for k, v in resp.headers.items()}
            if outcome is not Outcome.OK:
                _discard(resp)
                return self._result(
                    outcome, url, current, started, http_status=status, headers=resp_headers,
                    retry_after=parse_retry_after(resp_headers.get("retry-after"), now),
                    permanent_redirect=permanent,
                    etag=resp_headers.get("etag") or state.etag,
                    last_modified=resp_headers.get("last-modified") or state.last_modified,
                    body_hash=state.body_hash,
                    error=None if outcome is Outcome.NOT_MODIFIED else f"HTTP {status}",
                )
            body = self._read_capped(resp, deadline)
            if body is None:
                return self._result(Outcome.TOO_LARGE, url, current, started, http_status=status,
                                    headers=resp_headers, permanent_redirect=permanent,
                                    error=f"body larger than the {self.settings.max_body_bytes:,}-byte cap")
            if isinstance(body, Outcome):
                return self._result(body, url, current, started, http_status=status,
                                    error="body not received within the time limit")
            body_hash = hashlib.sha256(body).hexdigest()
            unchanged = state.body_hash == body_hash
            return self._result(
                Outcome.NOT_MODIFIED if unchanged else Outcome.OK,
                url, current, started, http_status=status, headers=resp_headers,
                body=None if unchanged else body,
                etag=resp_headers.get("etag"), last_modified=resp_headers.get("last-modified"),
                body_hash=body_hash, permanent_redirect=permanent,
            )
        except Exception as e:  # every failure becomes a classified result, never a crash
            if time.monotonic() >= deadline:  # cut off by the deadline (getresponse)
                return self._result(Outcome.TIMEOUT, url, current, started,
                                    error="response not received within the time limit")
            return self._result(classify_exception(e), url, current, started,
                                error=describe_exception(e, current, self.settings.fetch_timeout)[:500])
        finally:
            _DEADLINE.at = None

    def _read_capped(self, resp, deadline: float) -> bytes | Outcome | None:
        """The decoded body, None when over the cap (gzip bombs included: the cap applies
        after decompression), or Outcome.TIMEOUT when it drips past the deadline."""
        cap = self.settings.max_body_bytes
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap and \
                not resp.headers.get("Content-Encoding"):
            resp.close()  # close first: released first, the unread body stays on a pooled
            resp.release_conn()  # connection and the next poll of that host reads it
            return None
        chunks, size = [], 0
        # read1, not stream(): stream(n) blocks until n bytes arrive, each recv renewing
        # the read timeout, so a server dripping a few bytes a second was never cut off
        # by the deadline. read1 returns after one socket read (at most CHUNK decoded
        # bytes, gzip included), so the deadline is checked as the bytes come.
        while chunk := resp.read1(CHUNK, decode_content=True):
            size += len(chunk)
            if size > cap or time.monotonic() > deadline:
                resp.close()  # do not drain a huge or stalled body back into the pool
                resp.release_conn()
                return None if size > cap else Outcome.TIMEOUT
            chunks.append(chunk)
        resp.release_conn()
        return b"".join(chunks)

    def _result(self, outcome, url, final_url, started, **kw) -> FetchResult:
        return FetchResult(outcome=outcome, url=url, final_url=final_url,
                           elapsed=time.monotonic() - started, **kw)

    def close(self) -> None:
        self.pool.clear()
