"""The crawl loop shared by the web and feed sources.

Breadth-first from the seeds, ``concurrency`` pages in flight (download and conversion run in
worker threads; the store is written from the calling thread only). What a run must remember
for the next one lives in ``run.state["pages"]``, per requested URL: the validators for a
conditional GET, the document the page became, and its in-scope links, so that a 304 still
leads the crawl on to the pages below it. A page that fails keeps its previous document (and
its links are followed from the previous run), a page that is gone (404/410), now disallowed
or no longer a page is not kept, so a complete run retires it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from aicoderd.sources import download, pagetext
from aicoderd.sources.base import FetchedDocument, SourceRun
from aicoderd.sources.download import Downloader, Fetched, Limits
from aicoderd.sources.politeness import HostPacer, Robots
from aicoderd.sources.urls import Scope, looks_like_a_page, origin, resolve

_NOT_PAGES = ("content_type", "binary")  # skipped, but worth a 304 next time


@dataclass
class Task:
    url: str  # canonical
    depth: int
    root: bool = False  # a start URL or feed entry: fetched whatever the scope says
    meta: dict[str, Any] = field(default_factory=dict)  # provenance to add (sitemap lastmod…)


@dataclass
class Settings:
    scope: Scope
    limits: Limits
    requests_per_second: float
    concurrency: int = 2
    max_depth: int = 0
    max_pages: int = 1000


class Crawler:
    """Use as a context manager (it owns the HTTP client)."""

    def __init__(self, run: SourceRun, settings: Settings) -> None:
        self.run = run
        self.settings = settings
        self.scope = settings.scope
        self.pages: dict[str, dict[str, Any]] = run.state.setdefault("pages", {})
        self.outcomes: dict[str, tuple[str, str | None]] = {}  # url → (outcome, document uri)
        self.requests = 0
        self._documents: set[str] = set()
        self._queued: set[str] = set()
        self._frontier: deque[Task] = deque()
        self.client = run.http_client(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.limits.timeout),
            limits=httpx.Limits(max_connections=settings.concurrency + 1),
        )
        self.pacer = HostPacer(1.0 / settings.requests_per_second, lambda: run.cancelled)
        self.robots = Robots(
            self.client, self.pacer, str(self.client.headers["user-agent"]), settings.limits.timeout
        )
        self.downloader = Downloader(
            self.client, self.robots, self.pacer, settings.limits, lambda: run.cancelled
        )

    def __enter__(self) -> Crawler:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.close()

    # -- the loop ----------------------------------------------------------------------------

    def crawl(self, seeds: Iterable[Task]) -> None:
        for task in seeds:
            self._enqueue(task)
        limit = self.settings.max_pages
        inflight: dict[Future[tuple[Fetched, pagetext.Page | None]], Task] = {}
        with ThreadPoolExecutor(self.settings.concurrency, "crawl") as pool:
            while self._frontier or inflight:
                while (
                    self._frontier
                    and len(inflight) < self.settings.concurrency
                    and self.requests < limit
                    and not self.run.cancelled
                ):
                    task = self._frontier.popleft()
                    self.requests += 1
                    inflight[pool.submit(self._work, task)] = task
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    task = inflight.pop(future)
                    self._record(task, *future.result())
                self._progress(len(inflight))
        if self._frontier or self.run.cancelled:
            self.run.complete = False  # cut by max_pages or cancelled: retire nothing
        self._report_robots()

    def fetch(self, url: str, validators: dict[str, Any] | None = None) -> Fetched:
        """One resource that is not a page (a sitemap, a feed), with the same politeness."""
        return self.downloader.get(url, validators, raw=True)

    def forget_unvisited(self) -> None:
        """After a complete run: drop what we remember of pages no longer reached."""
        for url in [u for u in self.pages if u not in self.outcomes]:
            del self.pages[url]

    def _work(self, task: Task) -> tuple[Fetched, pagetext.Page | None]:
        """In a worker thread: download and convert. One odd page fails alone, not the run."""
        follow = (lambda url: True) if task.root else self._follows
        try:
            fetched = self.downloader.get(task.url, self.pages.get(task.url), follow)
            page = pagetext.page(fetched) if fetched.outcome == download.OK else None
        except Exception as exc:  # a URL httpx refuses, a page the converter chokes on
            why = f"{type(exc).__name__}: {exc}"
            return Fetched(task.url, task.url, download.FAILED, "error", why), None
        return fetched, page

    def _follows(self, url: str) -> bool:
        return self.scope.allows(url)

    def _enqueue(self, task: Task) -> None:
        if task.url not in self._queued:
            self._queued.add(task.url)
            self._frontier.append(task)

    def _progress(self, inflight: int) -> None:
        c = self.run.counts
        self.run.progress(
            step=self.requests - inflight,
            total=self.requests + len(self._frontier),
            added=c["added"],
            updated=c["updated"],
            unchanged=c["unchanged"],
            failed=c["failed"],
        )

    # -- what a response means ---------------------------------------------------------------

    def _record(self, task: Task, fetched: Fetched, page: pagetext.Page | None) -> None:
        if task.root and fetched.final_url != task.url and fetched.outcome == download.OK:
            self.scope.add_root(fetched.final_url)  # a start URL that moved opens its folder
        outcome = fetched.outcome
        if outcome == download.OK and page is not None:
            self._stored(task, fetched, page)
        elif outcome == download.NOT_MODIFIED:
            self._unchanged(task)
        elif outcome == download.FAILED:
            known = self.pages.get(task.url, {})
            doc = known.get("doc") or task.url
            self.run.fail(doc, fetched.reason, fetched.message)
            self.outcomes[task.url] = (outcome, known.get("doc"))
            self._follow_links(task, known.get("links", []))
        else:
            self._not_a_document(task, fetched)

    def _not_a_document(self, task: Task, fetched: Fetched) -> None:
        """Gone, disallowed, out of scope, or not a page."""
        self.outcomes[task.url] = (fetched.outcome, None)
        if fetched.reason == "robots_unreachable":
            return  # not asked at all: remember the page as it was (reported once per host)
        if task.root:  # a start URL (or feed entry link) the user gave: say so, retire nothing
            self.run.complete = False
            self.run.fail(task.url, fetched.reason or fetched.outcome, fetched.message)
        if fetched.reason in ("content_type", "binary") and (fetched.etag or fetched.last_modified):
            # Not a page, but remember its validators: next time it costs a 304.
            self.pages[task.url] = {"etag": fetched.etag, "last_modified": fetched.last_modified}
        else:
            self.pages.pop(task.url, None)

    def _stored(self, task: Task, fetched: Fetched, page: pagetext.Page) -> None:
        doc = self._document_uri(fetched, page)
        links = self._links(fetched, page)
        self.pages[task.url] = {
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "doc": doc if page.text.strip() else None,
            "links": links,
        }
        self.outcomes[task.url] = (download.OK, self.pages[task.url]["doc"])
        if page.text.strip() and doc not in self._documents:
            self._documents.add(doc)
            meta = {
                "url": fetched.final_url,
                "title": page.title,
                "content_type": fetched.content_type,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "last_modified": fetched.last_modified,
                **task.meta,
            }
            meta = {k: v for k, v in meta.items() if v is not None}
            self.run.put(FetchedDocument(uri=doc, text=page.text, kind=page.kind, meta=meta))
        self._follow_links(task, links)

    def _unchanged(self, task: Task) -> None:
        known = self.pages.get(task.url, {})
        doc = known.get("doc")
        if doc is not None and not self.run.is_stored(doc):
            # We hold validators for a document the store no longer has: fetch it in full.
            self.pages.pop(task.url, None)
            self._frontier.appendleft(task)
            return
        if doc is not None and doc not in self._documents:
            self._documents.add(doc)
            self.run.keep(doc)
        self.outcomes[task.url] = (download.NOT_MODIFIED, doc)
        self._follow_links(task, known.get("links", []))

    def _document_uri(self, fetched: Fetched, page: pagetext.Page) -> str:
        """The final URL, or the page's rel=canonical when it stays on the same site."""
        if page.canonical:
            canonical = resolve(page.base or fetched.final_url, page.canonical)
            if canonical is not None and origin(canonical) == origin(fetched.final_url):
                return canonical
        return fetched.final_url

    def _links(self, fetched: Fetched, page: pagetext.Page) -> list[str]:
        if self.settings.max_depth == 0:
            return []
        base = resolve(fetched.final_url, page.base) if page.base else fetched.final_url
        out: dict[str, None] = {}
        for href in page.links:
            url = resolve(base or fetched.final_url, href)
            if url is not None and looks_like_a_page(url) and self.scope.allows(url):
                out[url] = None
        return list(out)

    def _follow_links(self, task: Task, links: list[str]) -> None:
        if task.depth >= self.settings.max_depth:
            return
        for url in links:
            if self.scope.allows(url):  # the scope may have changed since the links were seen
                self._enqueue(Task(url, task.depth + 1))

    def _report_robots(self) -> None:
        for host, why in self.robots.unreachable.items():
            self.run.complete = False  # its pages were not asked for: keep them
            self.run.fail(f"{host}/robots.txt", "robots_unreachable", why)
