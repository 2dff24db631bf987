"""URL identity, crawl scope, Retry-After and the per-host pace of the web sources."""

from __future__ import annotations

import threading
import time
from email.utils import formatdate

import pytest

from aicoderd.sources.download import _retry_after
from aicoderd.sources.politeness import HostPacer
from aicoderd.sources.urls import Scope, canonical, looks_like_a_page, path_prefix, resolve


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Docs.Example.ORG:80/a/../b.html#intro", "http://docs.example.org/b.html"),
        ("https://h:443/x?b=2&a=1&utm_source=feed&fbclid=1", "https://h/x?a=1&b=2"),
        ("http://h:8080", "http://h:8080/"),
        ("http://h/a%7eb/c d", "http://h/a~b/c%20d"),
    ],
)
def test_canonical_urls(url: str, expected: str) -> None:
    assert canonical(url) == expected


def test_links_resolve_against_the_page() -> None:
    assert resolve("http://h/docs/a.html", "b.html#x") == "http://h/docs/b.html"
    assert resolve("http://h/docs/a.html", "../img/logo.png") == "http://h/img/logo.png"
    for href in ("mailto:me@h", "javascript:void(0)", "#top", "ftp://h/x", "http://[bad"):
        assert resolve("http://h/docs/a.html", href) is None
    assert not looks_like_a_page("http://h/docs/manual.PDF")
    assert looks_like_a_page("http://h/docs/page.html")


def test_default_scope_is_the_start_urls_host_and_folder() -> None:
    assert path_prefix("http://h/docs/index.html") == "/docs/"
    assert path_prefix("http://h/docs") == "/docs/"
    scope = Scope.of(["http://h/docs/index.html"], exclude=[r"/docs/old/"])
    assert scope.allows("http://h/docs/deep/page.html")
    assert scope.allows("http://h/docs")
    assert not scope.allows("http://h/docsearch.html")
    assert not scope.allows("http://h/blog/")
    assert not scope.allows("http://other/docs/page.html")
    assert not scope.allows("http://h/docs/old/page.html")
    widened = Scope.of(["http://h/docs/"], include=[r"/(docs|api)/"])
    assert widened.allows("http://h/api/ref.html") and not widened.allows("http://h/blog/x")
    assert not widened.allows("http://other/api/ref.html")  # include never leaves the hosts


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("120") == 120.0
    later = _retry_after(formatdate(time.time() + 60, usegmt=True))
    assert later is not None and 55 <= later <= 61
    assert _retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert _retry_after("soon") is None and _retry_after(None) is None


def test_host_pacer_spaces_requests_per_host_across_threads() -> None:
    pacer = HostPacer(0.1)
    times: dict[str, list[float]] = {"a": [], "b": []}

    def take(host: str) -> None:
        pacer.wait(host)
        times[host].append(time.monotonic())

    threads = [threading.Thread(target=take, args=(h,)) for h in "ab" for _ in range(4)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for host in "ab":  # the k-th request of a host cannot start before k intervals passed
        assert all(t - started >= k * 0.1 - 0.005 for k, t in enumerate(sorted(times[host])))
    assert time.monotonic() - started < 0.6  # the two hosts did not wait for each other

    pacer.defer("a", 0.3)
    t0 = time.monotonic()
    pacer.wait("a")
    assert time.monotonic() - t0 >= 0.29
