"""The web source against a documentation site served on loopback: scope, robots.txt with
wildcards, a sitemap, canonical URLs, conditional GET, redirects (and a loop), content types,
timeouts, a 10 MB body, retries (500, 429 + Retry-After), pacing, retirement.

Each run is the real ``source.fetch`` job function with a real store, in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

from tests.integration.site import (
    Site,
    docs_page,
    document_statuses,
    run_dying,
    run_source,
    source_state,
    stored,
)

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"
ROBOTS = """\
User-agent: *
Disallow: /docs/private/
Allow: /docs/private/open.html
Disallow: /*.txt$
Disallow: /*?print=
"""
KEY = "web:docs"


@pytest.fixture
def site() -> Iterator[Site]:
    with Site.serve() as s:
        yield s


@pytest.fixture
def other() -> Iterator[Site]:
    """Another host: nothing may reach it."""
    with Site.serve() as s:
        yield s


def source(site: Site, **options: Any) -> dict[str, Any]:
    return {
        "name": "docs",
        "type": "web",
        "urls": [site.url("/docs/")],
        "requests_per_second": 1000,
        "backoff_seconds": 0.05,
        "retries": 2,
        "timeout_seconds": 5,
        **options,
    }


def build_docs_site(site: Site, other: Site) -> None:
    site.page("/robots.txt", ROBOTS, "text/plain")
    links = [
        "quickstart.html",
        "quickstart.html#options",  # a fragment: the same page
        "guide/install/",
        "private/secret.html",  # disallowed
        "private/open.html",  # allowed by the longer Allow rule
        "notes.txt",  # disallowed by the $-anchored wildcard
        "quickstart.html?print=1",  # disallowed by the * wildcard
        "search.html?b=2&a=1",
        "search.html?a=1&b=2",  # the same URL once the query is sorted
        "print.html",  # rel=canonical → quickstart.html
        "dated.html",  # Last-Modified only, no ETag
        "old.html",  # 301 → new.html
        "loop-a.html",  # loop-a → loop-b → loop-a
        "logo.png",  # not a page: never requested
        "download",  # served as application/octet-stream
        "/blog/post.html",  # same host, outside /docs/
        other.url("/docs/elsewhere.html"),  # another host
    ]
    site.page("/docs/", docs_page("Widgets", "<p>Welcome to the widgets docs.</p>", links))
    site.page("/docs/quickstart.html", (DATA / "sphinx_page.html").read_text())
    site.page("/docs/guide/install/", (DATA / "mkdocs_page.html").read_text())
    site.page("/docs/private/open.html", docs_page("Open", "<p>An open private page.</p>"))
    site.page("/docs/private/secret.html", docs_page("Secret", "<p>Never fetched.</p>"))
    site.page("/docs/notes.txt", "plain notes", "text/plain")
    site.page("/docs/search.html", docs_page("Search", "<p>Search results page.</p>"))
    canonical = '<link rel="canonical" href="quickstart.html">'
    site.page("/docs/print.html", docs_page("Print", "<p>Printable.</p>", head=canonical))
    site.redirect("/docs/old.html", "/docs/new.html")
    site.page("/docs/new.html", docs_page("New", "<p>The page moved here.</p>"))
    site.redirect("/docs/loop-a.html", "/docs/loop-b.html", 302)
    site.redirect("/docs/loop-b.html", "/docs/loop-a.html", 302)
    site.page("/docs/download", b"\x89PNG\r\n\x1a\n\x00\x00binary", "application/octet-stream")
    site.page("/docs/sneaky.html", b"<html>\x00\x01\x02 binary", "text/html")
    site.page("/blog/post.html", docs_page("Blog", "<p>Out of scope.</p>"))
    site.page(
        "/sitemap.xml",  # an index, pointing at the real list
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{site.url('/sitemap-docs.xml')}</loc></sitemap></sitemapindex>",
        "application/xml",
    )
    site.page(
        "/sitemap-docs.xml",
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{site.url('/docs/orphan.html')}</loc><lastmod>2024-03-01</lastmod></url>"
        f"<url><loc>{site.url('/docs/sneaky.html')}</loc></url>"
        f"<url><loc>{site.url('/blog/post.html')}</loc></url>"
        "</urlset>",
        "application/xml",
    )
    site.page("/docs/orphan.html", docs_page("Orphan", "<p>Only the sitemap knows me.</p>"))
    site.page("/docs/dated.html", docs_page("Dated", "<p>Dated page.</p>"), etag=False)
    other.page("/docs/elsewhere.html", docs_page("Elsewhere", "<p>Another host.</p>"))


def test_first_crawl_then_an_unchanged_recrawl_adds_nothing(
    site: Site, other: Site, tmp_path: Path
) -> None:
    build_docs_site(site, other)
    config = source(site, sitemap=site.url("/sitemap.xml"))
    result = run_source(tmp_path, config)

    docs = stored(tmp_path, KEY)
    expected = {
        "/docs/",
        "/docs/quickstart.html",
        "/docs/guide/install/",
        "/docs/private/open.html",
        "/docs/search.html?a=1&b=2",
        "/docs/new.html",
        "/docs/orphan.html",
        "/docs/dated.html",
    }
    assert set(docs) == {site.url(p) for p in expected}
    assert result["added"] == len(expected)
    quickstart, meta = docs[site.url("/docs/quickstart.html")]
    assert quickstart == (DATA / "sphinx_page.md").read_text()
    assert meta["url"] == site.url("/docs/quickstart.html")
    assert meta["title"] == "Quickstart — Widgets 2.1 documentation"
    assert docs[site.url("/docs/guide/install/")][0] == (DATA / "mkdocs_page.md").read_text()
    assert docs[site.url("/docs/orphan.html")][1]["sitemap_lastmod"].startswith("2024-03-01")
    assert docs[site.url("/docs/new.html")][1]["url"] == site.url("/docs/new.html")

    asked = site.paths()
    for never in (
        "/docs/private/secret.html",
        "/docs/notes.txt",
        "/docs/quickstart.html?print=1",
        "/docs/logo.png",
        "/blog/post.html",
    ):
        assert never not in asked, never
    assert other.paths() == []
    assert asked.count("/docs/search.html?a=1&b=2") == 1
    assert asked.count("/docs/quickstart.html") == 1
    assert "/docs/download" in asked and "/docs/sneaky.html" in asked  # asked, not kept
    assert result["failed"] == 1
    assert result["errors"] == [
        f"{site.url('/docs/loop-a.html')}: redirect_loop: "
        + f"redirect to {site.url('/docs/loop-a.html')}"
    ]

    site.forget()
    again = run_source(tmp_path, config)
    assert again.get("added", 0) == 0 and again.get("updated", 0) == 0
    assert again["unchanged"] == len(expected)
    assert stored(tmp_path, KEY).keys() == docs.keys()
    pages = {p: s for p, s in site.statuses().items() if p.startswith("/docs/")}
    for path in expected:
        assert pages[path] == [304], path
    assert not any(200 in s for s in pages.values())  # not even the binary files


def test_a_changed_page_updates_and_a_gone_page_retires(site: Site, tmp_path: Path) -> None:
    site.page("/docs/", docs_page("Index", "<p>Start here.</p>", ["a.html", "b.html"]))
    site.page("/docs/a.html", docs_page("A", "<p>First version of A.</p>"))
    site.page("/docs/b.html", docs_page("B", "<p>B is here for now.</p>"))
    first = run_source(tmp_path, source(site))
    assert first["added"] == 3

    site.page("/docs/a.html", docs_page("A", "<p>Second version of A.</p>"))
    site.remove("/docs/b.html")  # 404 from now on
    second = run_source(tmp_path, source(site))
    assert (second.get("updated"), second.get("retired"), second.get("unchanged")) == (1, 1, 1)
    docs = stored(tmp_path, KEY)
    assert set(docs) == {site.url("/docs/"), site.url("/docs/a.html")}
    assert "Second version of A." in docs[site.url("/docs/a.html")][0]
    assert document_statuses(tmp_path) == {"stored": 2, "retired": 2}  # old A, B


def test_slow_pages_time_out_and_big_bodies_are_cut(site: Site, tmp_path: Path) -> None:
    streamed: list[int] = []

    def slow(request: Request) -> Response:
        time.sleep(3)
        return Response(docs_page("Slow", "<p>Too late.</p>"), content_type="text/html")

    def huge(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            yield b"<html><body><p>"
            for _ in range(160):  # 10 MB, no Content-Length
                streamed.append(1)
                yield b"x" * 65536
            yield b"</p></body></html>"

        return Response(chunks(), content_type="text/html")

    links = ["slow.html", "huge.html", "declared.html", "ok.html"]
    site.page("/docs/", docs_page("Index", "<p>Limits.</p>", links))
    site.handler("/docs/slow.html", slow)
    site.handler("/docs/huge.html", huge)
    site.page("/docs/declared.html", "<p>" + "y" * 10 * 2**20 + "</p>")  # Content-Length 10 MB
    site.page("/docs/ok.html", docs_page("OK", "<p>Fine.</p>"))
    started = time.monotonic()
    result = run_source(
        tmp_path, source(site, timeout_seconds=0.5, retries=1, max_body_bytes="1MiB")
    )
    elapsed = time.monotonic() - started

    errors = sorted(e.split(": ")[1] for e in result["errors"])
    assert errors == ["timeout", "too_large", "too_large"]
    assert elapsed < 2.9  # two attempts of 0.5 s, not the 3 s the server takes
    assert len(streamed) < 160  # the client hung up before the end of the 10 MB stream
    assert set(stored(tmp_path, KEY)) == {site.url("/docs/"), site.url("/docs/ok.html")}


def test_500_then_success_and_429_with_retry_after_are_retried(site: Site, tmp_path: Path) -> None:
    calls = {"flaky": 0, "busy": 0}

    def flaky(request: Request) -> Response:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            return Response("oops", status=500)
        return Response(docs_page("Flaky", "<p>Second time lucky.</p>"), content_type="text/html")

    def busy(request: Request) -> Response:
        calls["busy"] += 1
        if calls["busy"] == 1:
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        return Response(docs_page("Busy", "<p>Thanks for waiting.</p>"), content_type="text/html")

    site.page("/docs/", docs_page("Index", "<p>Retries.</p>", ["flaky.html", "busy.html"]))
    site.handler("/docs/flaky.html", flaky)
    site.handler("/docs/busy.html", busy)
    result = run_source(tmp_path, source(site))

    assert result["added"] == 3 and not result["errors"]
    assert site.statuses()["/docs/flaky.html"] == [500, 200]
    first, second = site.hits_of("/docs/busy.html")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # Retry-After: 1 was obeyed


def test_too_long_retry_after_fails_the_page_without_stalling(site: Site, tmp_path: Path) -> None:
    site.page("/docs/", docs_page("Index", "<p>Busy.</p>", ["busy.html"]))
    site.handler(
        "/docs/busy.html", lambda r: Response("no", status=503, headers={"Retry-After": "3600"})
    )
    started = time.monotonic()
    result = run_source(tmp_path, source(site, max_backoff_seconds=10))
    assert time.monotonic() - started < 5
    assert [e.split(": ")[1] for e in result["errors"]] == ["rate_limited"]


def paced(times: list[float], interval: float) -> bool:
    """The k-th request came at least k intervals after the first (a little clock slack)."""
    return all(t - times[0] >= k * interval - 0.01 for k, t in enumerate(times))


def test_crawl_delay_and_requests_per_second_pace_each_host(site: Site, tmp_path: Path) -> None:
    pages = [f"p{i}.html" for i in range(4)]
    site.page("/robots.txt", "User-agent: *\nCrawl-delay: 0.3\n", "text/plain")
    site.page("/docs/", docs_page("Index", "<p>Paced.</p>", pages))
    for name in pages:
        site.page(f"/docs/{name}", docs_page(name, f"<p>Page {name}.</p>"))
    run_source(tmp_path, source(site, concurrency=4))
    times = sorted(h.at for h in site.hits)  # robots.txt, the index, 4 pages
    assert len(times) == 6 and paced(times, 0.3)

    site.forget()
    site.page("/robots.txt", "User-agent: *\nDisallow:\n", "text/plain")
    run_source(tmp_path / "again", source(site, concurrency=4, requests_per_second=5))
    assert paced(sorted(h.at for h in site.hits), 0.2)


def test_unreachable_robots_txt_fetches_nothing_and_retires_nothing(
    site: Site, tmp_path: Path
) -> None:
    site.page("/docs/", docs_page("Index", "<p>Here.</p>", ["a.html"]))
    site.page("/docs/a.html", docs_page("A", "<p>Page A.</p>"))
    assert run_source(tmp_path, source(site))["added"] == 2

    site.handler("/robots.txt", lambda r: Response("down", status=503))
    site.forget()
    result = run_source(tmp_path, source(site))
    assert [p for p in site.paths() if p != "/robots.txt"] == []
    assert result.get("retired", 0) == 0 and len(stored(tmp_path, KEY)) == 2
    assert [e.split(": ")[1] for e in result["errors"]] == ["robots_unreachable"]


def test_max_pages_cuts_the_crawl_and_then_nothing_is_retired(site: Site, tmp_path: Path) -> None:
    pages = [f"p{i}.html" for i in range(5)]
    site.page("/docs/", docs_page("Index", "<p>Many.</p>", pages))
    for name in pages:
        site.page(f"/docs/{name}", docs_page(name, f"<p>Page {name}.</p>"))
        site.page(f"/docs/deeper/{name}", docs_page(name, f"<p>Deep {name}.</p>"))
    assert run_source(tmp_path, source(site))["added"] == 6

    cut = run_source(tmp_path, source(site, max_pages=3))
    assert cut["unchanged"] == 3 and cut.get("retired", 0) == 0
    assert len(stored(tmp_path, KEY)) == 6


def test_max_depth_and_include_exclude_patterns(site: Site, tmp_path: Path) -> None:
    site.page("/docs/", docs_page("Index", "<p>Top.</p>", ["a.html", "/api/ref.html"]))
    site.page("/docs/a.html", docs_page("A", "<p>Depth one.</p>", ["b.html", "skip-me.html"]))
    site.page("/docs/b.html", docs_page("B", "<p>Depth two.</p>"))
    site.page("/docs/skip-me.html", docs_page("Skip", "<p>Excluded.</p>"))
    site.page("/api/ref.html", docs_page("Ref", "<p>Included.</p>"))

    run_source(tmp_path / "one", source(site, max_depth=1))
    assert set(stored(tmp_path / "one", KEY)) == {site.url("/docs/"), site.url("/docs/a.html")}

    run_source(tmp_path / "two", source(site, include=[r"/(docs|api)/"], exclude=[r"skip-me"]))
    paths = {u.split(str(site.server.port))[1] for u in stored(tmp_path / "two", KEY)}
    assert paths == {"/docs/", "/docs/a.html", "/docs/b.html", "/api/ref.html"}


def test_a_start_url_that_is_gone_fails_the_run_and_retires_nothing(
    site: Site, tmp_path: Path
) -> None:
    site.page("/docs/", docs_page("Index", "<p>Here.</p>", ["a.html"]))
    site.page("/docs/a.html", docs_page("A", "<p>Page A.</p>"))
    assert run_source(tmp_path, source(site))["added"] == 2

    site.remove("/docs/")  # the site moved, or a CDN hiccup: not a reason to retire it all
    result = run_source(tmp_path, source(site))
    assert result["errors"] == [f"{site.url('/docs/')}: http_404: gone"]
    assert result.get("retired", 0) == 0 and len(stored(tmp_path, KEY)) == 2


def test_a_crawl_that_dies_between_batches_keeps_each_etag_with_its_document(
    site: Site, tmp_path: Path
) -> None:
    leaves = [f"p{i}.html" for i in range(8)]
    site.page("/docs/", docs_page("Index", "<p>Start.</p>", leaves))
    for leaf in leaves:
        site.page(f"/docs/{leaf}", docs_page(leaf, f"<p>Page {leaf}.</p>"))
    config = source(site, concurrency=1)

    # Committed in batches of 2; the process dies at the 6th document: 4 are stored.
    run_dying(tmp_path, config, puts=5, batch_documents=2)
    docs = stored(tmp_path, KEY)
    assert len(docs) == 4
    # The state saved is the one committed with them: an ETag exactly for each stored page.
    pages = source_state(tmp_path, "docs")["pages"]
    assert {url for url, page in pages.items() if page.get("etag")} == set(docs)
    assert document_statuses(tmp_path) == {"stored": 4}

    # The next run asks those 4 conditionally (304) and fetches the other 5 in full.
    site.forget()
    result = run_source(tmp_path, config)
    assert (result["added"], result["unchanged"], result.get("updated", 0)) == (5, 4, 0)
    kept = {url.removeprefix(site.url("")) for url in docs}
    pages_asked = {p: s for p, s in site.statuses().items() if p.startswith("/docs/")}
    assert {p for p, s in pages_asked.items() if s == [304]} == kept
    assert {p for p, s in pages_asked.items() if s == [200]} == (
        {"/docs/", *(f"/docs/{leaf}" for leaf in leaves)} - kept
    )
    assert len(stored(tmp_path, KEY)) == 9 and document_statuses(tmp_path) == {"stored": 9}
