"""Source type ``web``: a documentation site, crawled politely into Markdown documents.

Seeds are the start URLs and, when configured, the in-scope pages a sitemap lists (a sitemap
index is followed, up to 50 sitemap files). Scope, limits and what a re-crawl costs are the
crawler's (:mod:`aicoderd.sources.crawl`); a document's URI is its canonical URL and its
``meta`` keeps where it came from.
"""

from __future__ import annotations

import gzip
import logging

from aicoderd.config import WebSource
from aicoderd.errors import SourceError
from aicoderd.sources import crawl, download
from aicoderd.sources.base import SourceRun
from aicoderd.sources.download import Limits
from aicoderd.sources.urls import Scope, canonical, looks_like_a_page

MAX_SITEMAPS = 50  # sitemap files read per run (an index and its children)


def fetch(run: SourceRun) -> None:
    config = run.config
    if not isinstance(config, WebSource):
        raise SourceError(f"source {run.name} is not a web source")
    starts = [canonical(str(url)) for url in config.urls]
    settings = crawl.Settings(
        scope=Scope.of(starts, config.include, config.exclude),
        limits=Limits.of(config),
        requests_per_second=config.requests_per_second,
        concurrency=config.concurrency,
        max_depth=config.max_depth,
        max_pages=config.max_pages,
    )
    with crawl.Crawler(run, settings) as crawler:
        seeds = [crawl.Task(url, 0, root=True) for url in starts]
        if config.sitemap is not None:
            seeds += sitemap_seeds(run, crawler, canonical(str(config.sitemap)))
        crawler.crawl(seeds)
        if run.complete:
            crawler.forget_unvisited()


def sitemap_seeds(run: SourceRun, crawler: crawl.Crawler, url: str) -> list[crawl.Task]:
    """The in-scope pages of a sitemap (or sitemap index), with their ``lastmod``."""
    from usp.objects.sitemap import AbstractIndexSitemap, AbstractPagesSitemap, InvalidSitemap
    from usp.tree import sitemap_from_str

    logging.getLogger("usp").setLevel(logging.ERROR)  # it reports every odd line at INFO
    seeds: dict[str, crawl.Task] = {}
    pending, read = [url], 0
    while pending and read < MAX_SITEMAPS:
        current = pending.pop(0)
        read += 1
        fetched = crawler.fetch(current)
        if fetched.outcome != download.OK:
            run.fail(current, fetched.reason or fetched.outcome, fetched.message or "no sitemap")
            run.complete = False  # pages only the sitemap knows may be missing: retire nothing
            continue
        body = fetched.body
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        tree = sitemap_from_str(body.decode("utf-8", errors="replace"))
        if isinstance(tree, AbstractIndexSitemap):
            pending += [s.url for s in tree.sub_sitemaps if isinstance(s, InvalidSitemap)]
        elif isinstance(tree, AbstractPagesSitemap):
            for entry in tree.pages:
                page = canonical(entry.url)
                if looks_like_a_page(page) and crawler.scope.allows(page) and page not in seeds:
                    meta = {"sitemap": current}
                    if entry.last_modified is not None:
                        meta["sitemap_lastmod"] = entry.last_modified.isoformat()
                    seeds[page] = crawl.Task(page, 0, meta=meta)
    return list(seeds.values())
