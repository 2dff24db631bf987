"""One polite GET of a page, with every limit a crawler owes the site and itself.

robots.txt and the host's pace come first; then a conditional GET (stored ETag /
Last-Modified); redirects are followed by hand so that every hop is checked against robots,
the crawl's scope and a loop; the content type must be on the allow-list; the body is streamed
and abandoned past the size cap or the whole-request deadline; 429, 5xx, timeouts and network
errors are retried with exponential backoff and jitter, and a ``Retry-After`` is obeyed (one
longer than ``max_backoff_seconds`` fails the page instead of stalling the run).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from aicoderd.sources.politeness import HostPacer, Robots, pause
from aicoderd.sources.urls import host_key, resolve

OK, NOT_MODIFIED, GONE, SKIPPED, FAILED = "ok", "not_modified", "gone", "skipped", "failed"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 5 * 2**20
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 2.0
    max_backoff: float = 300.0
    max_redirects: int = 5
    content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")

    @classmethod
    def of(cls, config: Any) -> Limits:
        """From a web or feed source's settings."""
        return cls(
            max_body_bytes=int(config.max_body_bytes),
            timeout=config.timeout_seconds,
            retries=config.retries,
            backoff=config.backoff_seconds,
            max_backoff=config.max_backoff_seconds,
            max_redirects=config.max_redirects,
            content_types=tuple(t.lower() for t in config.content_types),
        )


@dataclass
class Fetched:
    url: str  # as asked for
    final_url: str  # after redirects
    outcome: str  # OK | NOT_MODIFIED | GONE | SKIPPED | FAILED
    reason: str = ""  # SKIPPED / FAILED: a short code
    message: str = ""
    status: int = 0
    content_type: str = ""
    charset: str | None = None
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


class _Retry(Exception):
    def __init__(self, reason: str, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.after = after


class Downloader:
    def __init__(
        self,
        client: httpx.Client,
        robots: Robots,
        pacer: HostPacer,
        limits: Limits,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.robots = robots
        self.pacer = pacer
        self.limits = limits
        self.cancelled = cancelled

    def get(
        self,
        url: str,
        validators: dict[str, Any] | None = None,
        follow: Callable[[str], bool] = lambda url: True,
        raw: bool = False,
    ) -> Fetched:
        """Fetch ``url``; ``follow`` says whether a redirect target may be fetched. ``raw``:
        any content type, binary included (a sitemap, a feed)."""
        types = None if raw else self.limits.content_types
        attempt = 0
        while True:
            try:
                return self._once(url, validators or {}, follow, types)
            except _Retry as retry:
                if attempt >= self.limits.retries or self.cancelled():
                    return Fetched(url, url, FAILED, retry.reason, str(retry))
                delay = self._delay(attempt, retry.after)
                if delay is None:
                    message = f"{retry}; Retry-After {retry.after:.0f} s is too long"
                    return Fetched(url, url, FAILED, "rate_limited", message)
                attempt += 1
                if retry.after is not None:
                    self.pacer.defer(host_key(url), delay)  # the whole host waits
                else:
                    pause(delay, self.cancelled)

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        if retry_after is not None:
            return retry_after if retry_after <= self.limits.max_backoff else None
        backoff: float = self.limits.backoff * 2**attempt * random.uniform(0.5, 1.5)
        return min(backoff, self.limits.max_backoff)

    def _once(
        self,
        url: str,
        validators: dict[str, Any],
        follow: Callable[[str], bool],
        types: tuple[str, ...] | None,
    ) -> Fetched:
        headers = _conditional(validators)
        deadline = time.monotonic() + self.limits.timeout
        current, seen = url, {url}
        for _ in range(self.limits.max_redirects + 1):
            origin = host_key(current)
            if not self.robots.allows(origin, current):
                if origin in self.robots.unreachable:
                    why = self.robots.unreachable[origin]
                    return Fetched(url, current, SKIPPED, "robots_unreachable", why)
                return Fetched(url, current, SKIPPED, "robots", "disallowed by robots.txt")
            self.pacer.wait(origin)
            with self._stream(current, headers) as resp:
                if resp.status_code in REDIRECT_STATUSES and "location" in resp.headers:
                    _drain(resp)
                    target = resolve(current, resp.headers["location"])
                    if target is None or target in seen:
                        why = "redirect_loop" if target in seen else "bad_redirect"
                        return Fetched(url, current, FAILED, why, f"redirect to {target}")
                    if not follow(target):
                        return Fetched(url, target, SKIPPED, "out_of_scope", f"→ {target}")
                    seen.add(target)
                    current = target
                    continue
                return self._answer(url, current, resp, types, deadline)
        return Fetched(
            url, current, FAILED, "too_many_redirects", f"more than {self.limits.max_redirects}"
        )

    def _stream(self, url: str, headers: dict[str, str]) -> _Guard:
        return _Guard(self.client.stream("GET", url, headers=headers, follow_redirects=False))

    def _answer(
        self,
        url: str,
        final: str,
        resp: httpx.Response,
        types: tuple[str, ...] | None,
        deadline: float,
    ) -> Fetched:
        status = resp.status_code
        if status != 200:
            _drain(resp)
        if status == 304:
            return Fetched(url, final, NOT_MODIFIED, status=304)
        if status in (404, 410):
            return Fetched(url, final, GONE, f"http_{status}", "gone", status=status)
        if status in RETRY_STATUSES:
            after = _retry_after(resp.headers.get("retry-after"))
            raise _Retry(f"http_{status}", f"HTTP {status}", after)
        if status >= 300:
            return Fetched(url, final, FAILED, f"http_{status}", f"HTTP {status}", status=status)
        media, charset = _media_type(resp.headers.get("content-type", ""))
        answer = Fetched(
            url,
            final,
            SKIPPED,
            status=status,
            content_type=media or "text/html",
            charset=charset,
            etag=resp.headers.get("etag"),
            last_modified=resp.headers.get("last-modified"),
        )
        if types is not None and media and not _allowed(media, types):
            answer.reason, answer.message = "content_type", media
            return answer
        body = self._body(resp, deadline)
        if body is None:
            cap = self.limits.max_body_bytes
            return Fetched(url, final, FAILED, "too_large", f"body over {cap} bytes")
        if types is not None and b"\x00" in body[:1024]:
            answer.reason, answer.message = "binary", "the body is binary"
            return answer
        answer.outcome, answer.body = OK, body
        return answer

    def _body(self, resp: httpx.Response, deadline: float) -> bytes | None:
        """The body, or None past the size cap; raises _Retry past the deadline."""
        cap = self.limits.max_body_bytes
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return None
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_bytes(64 * 1024):
                size += len(chunk)
                if size > cap:
                    return None
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Retry("timeout", f"body not complete in {self.limits.timeout} s")
        except httpx.TimeoutException as exc:
            raise _Retry("timeout", f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise _Retry("network", f"{type(exc).__name__}: {exc}") from None
        return b"".join(chunks)


class _Guard:
    """``client.stream(...)`` whose transport errors become retries."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def __enter__(self) -> httpx.Response:
        try:
            response: httpx.Response = self.manager.__enter__()
        except httpx.TimeoutException as exc:
            raise _Retry("timeout", f"{type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:
            raise _Retry("network", f"{type(exc).__name__}: {exc}") from None
        return response

    def __exit__(self, *exc: object) -> None:
        self.manager.__exit__(*exc)


def _drain(resp: httpx.Response, limit: int = 64 * 1024) -> None:
    """Read a small body to its end, so that the connection goes back to the pool (a body left
    unread makes httpx close the connection); a large one is left, and the connection closed."""
    size = 0
    try:
        for chunk in resp.iter_raw(16 * 1024):
            size += len(chunk)
            if size > limit:
                return
    except httpx.HTTPError:
        return


def _conditional(validators: dict[str, Any]) -> dict[str, str]:
    headers = {}
    if validators.get("etag"):
        headers["If-None-Match"] = str(validators["etag"])
    if validators.get("last_modified"):
        headers["If-Modified-Since"] = str(validators["last_modified"])
    return headers


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"' ")
    return media.strip().lower(), charset


def _allowed(media: str, types: tuple[str, ...]) -> bool:
    major = media.split("/")[0]
    return media in types or f"{major}/*" in types or "*/*" in types


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
