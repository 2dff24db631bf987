"""Politeness: robots.txt (RFC 9309, through Protego) and a per-host request pace.

robots.txt is read once per host and run. Its status decides as RFC 9309 says: 2xx → its
rules; 4xx → "unavailable", crawl freely; 5xx, 429 or a network failure → "unreachable",
assume everything is disallowed (and the run is incomplete, so nothing is retired because of
it). ``Crawl-delay`` and ``Request-rate`` can only slow a host down below the configured
``requests_per_second``, never speed it up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB


def pause(seconds: float, cancelled: Callable[[], bool]) -> None:
    """Sleep, waking early when the run is cancelled."""
    deadline = time.monotonic() + seconds
    while not cancelled():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


class HostPacer:
    """At most one request per ``interval`` seconds per host, across threads."""

    def __init__(self, interval: float, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.default = interval
        self.cancelled = cancelled
        self._interval: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def slow_down(self, host: str, interval: float) -> None:
        """A host asks for more time between requests (Crawl-delay)."""
        with self._lock:
            self._interval[host] = max(self.default, interval)
            if host in self._last:  # counted from the request that brought the news
                self._next[host] = max(self._next[host], self._last[host] + interval)

    def defer(self, host: str, seconds: float) -> None:
        """No request to ``host`` for ``seconds`` (a 429 or 503 with Retry-After)."""
        with self._lock:
            self._next[host] = max(self._next.get(host, 0.0), time.monotonic() + seconds)

    def wait(self, host: str) -> None:
        """Take the next free slot of ``host`` and sleep until it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(host, 0.0))
            self._last[host] = slot
            self._next[host] = slot + self._interval.get(host, self.default)
        if slot > now:
            pause(slot - now, self.cancelled)


@dataclass(frozen=True)
class Rules:
    parser: Protego | None  # None: no usable robots.txt
    allow_all: bool

    def allows(self, url: str, agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, agent))


class Robots:
    """robots.txt of every host a run touches, fetched once each (thread-safe)."""

    def __init__(self, client: httpx.Client, pacer: HostPacer, agent: str, timeout: float) -> None:
        self.client = client
        self.pacer = pacer
        self.agent = agent
        self.timeout = timeout
        self.unreachable: dict[str, str] = {}  # origin → why
        self._rules: dict[str, Rules] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def allows(self, origin: str, url: str) -> bool:
        return self.rules(origin).allows(url, self.agent)

    def rules(self, origin: str) -> Rules:
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._rules:
                self._rules[origin] = self._fetch(origin)
            return self._rules[origin]

    def _fetch(self, origin: str) -> Rules:
        self.pacer.wait(origin)
        url = f"{origin}/robots.txt"
        try:
            with self.client.stream(
                "GET", url, follow_redirects=True, timeout=self.timeout
            ) as resp:
                status = resp.status_code
                body = _read_capped(resp, ROBOTS_MAX_BYTES) if status < 300 else b""
        except httpx.TooManyRedirects:
            return Rules(None, allow_all=True)  # RFC 9309: like a 4xx, "unavailable"
        except httpx.HTTPError as exc:
            self.unreachable[origin] = f"{url}: {type(exc).__name__}: {exc}"
            return Rules(None, allow_all=False)
        if status == 429 or status >= 500:
            self.unreachable[origin] = f"{url}: HTTP {status}"
            return Rules(None, allow_all=False)
        if status >= 400:
            return Rules(None, allow_all=True)
        parser = Protego.parse(body.decode("utf-8", errors="replace"))
        self._pace(origin, parser)
        return Rules(parser, allow_all=True)

    def _pace(self, origin: str, parser: Protego) -> None:
        delay = parser.crawl_delay(self.agent)
        rate = parser.request_rate(self.agent)
        interval = float(delay) if delay else 0.0
        if rate is not None and rate.requests:
            interval = max(interval, rate.seconds / rate.requests)
        if interval:
            self.pacer.slow_down(origin, interval)


def _read_capped(resp: httpx.Response, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= cap:
            break
    return b"".join(chunks)[:cap]
