"""Source type ``feed``: RSS and Atom, parsed by feedparser from bytes fetched with httpx.

The feed itself is fetched conditionally (a 304 costs nothing more). Each entry not seen before,
or updated since, becomes a document: its linked page, through the crawler with the same
politeness and limits (the scope is the entry links themselves), or, with
``use_entry_content``, the entry's own content. Entries are remembered in ``run.state``. A feed
is a moving window, so an entry that leaves it keeps its document: feed runs never retire.

:func:`video_ids_from_feed` reads the video ids of a YouTube channel or playlist feed; the
``youtube`` source calls it.
"""

from __future__ import annotations

import re
from typing import Any

import feedparser

from aicoderd.config import FeedSource
from aicoderd.errors import SourceError
from aicoderd.sources import crawl, download, html2md
from aicoderd.sources.base import FetchedDocument, SourceRun
from aicoderd.sources.download import Limits
from aicoderd.sources.urls import Scope, canonical, resolve

MAX_REMEMBERED = 5000  # entries kept in run.state; the oldest are forgotten first
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_VIDEO_IN_URL = re.compile(r"(?:[?&]v=|youtu\.be/|/shorts/|/embed/)([A-Za-z0-9_-]{11})")


def fetch(run: SourceRun) -> None:
    config = run.config
    if not isinstance(config, FeedSource):
        raise SourceError(f"source {run.name} is not a feed source")
    run.complete = False  # a feed is a window: entries that leave it keep their documents
    url = canonical(str(config.url))
    state = run.state.setdefault("feed", {})
    seen: dict[str, dict[str, Any]] = run.state.setdefault("entries", {})
    with crawl.Crawler(run, _crawl_settings(config)) as crawler:
        fetched = crawler.fetch(url, state.get("validators"))
        if fetched.outcome == download.NOT_MODIFIED:
            for doc in state.get("documents", []):
                run.keep(doc)
            return
        if fetched.outcome != download.OK:
            raise SourceError(f"feed {url}: {fetched.reason or fetched.outcome} {fetched.message}")
        entries = _entries(fetched)[: config.max_entries]
        new = [e for e in entries if _changed(e, seen)]
        for entry in entries:
            if entry not in new and seen[entry["key"]].get("doc"):
                run.keep(seen[entry["key"]]["doc"])
        if config.use_entry_content:
            _store_contents(run, url, new, seen)
        else:
            _crawl_links(crawler, url, new, seen)
    retry = any(_changed(e, seen) for e in new)  # a page failed: the next run must see it again
    state["validators"] = (
        {} if retry else {"etag": fetched.etag, "last_modified": fetched.last_modified}
    )
    state["documents"] = [d for e in entries if (d := seen.get(e["key"], {}).get("doc"))]
    _forget_oldest(seen)


def video_ids_from_feed(xml_bytes: bytes) -> list[str]:
    """The video ids of a YouTube channel or playlist feed, newest first, each once."""
    return _video_ids(entries_of(xml_bytes))


def entries_of(xml_bytes: bytes, base: str | None = None) -> list[Any]:
    headers = {"content-location": base} if base else {}
    parsed = feedparser.parse(xml_bytes, response_headers=headers)
    if not parsed.version and not parsed.entries:
        why = parsed.get("bozo_exception") or "no feed element"
        raise SourceError(f"not an RSS or Atom feed: {why}")
    return list(parsed.entries)


def _video_ids(entries: list[Any]) -> list[str]:
    ids: dict[str, None] = {}
    for entry in entries:
        vid = entry.get("yt_videoid") or ""
        if not _VIDEO_ID.match(vid):
            m = _VIDEO_IN_URL.search(entry.get("link") or "")
            vid = m.group(1) if m else ""
        if vid:
            ids[vid] = None
    return list(ids)


def _crawl_settings(config: FeedSource) -> crawl.Settings:
    return crawl.Settings(
        scope=Scope(),
        limits=Limits.of(config),
        requests_per_second=config.requests_per_second,
        concurrency=config.concurrency,
        max_depth=0,
        max_pages=config.max_entries * 2,
    )


def _entries(fetched: download.Fetched) -> list[dict[str, Any]]:
    """Key, link, version and content of the feed's entries, newest first as listed."""
    raw = entries_of(fetched.body, fetched.final_url)
    if any(entry.get("yt_videoid") for entry in raw):
        raise SourceError(
            f"{fetched.url} is a YouTube feed: give its channel or playlist to a youtube source"
            " (channels: [...]) to get the transcripts"
        )
    out = []
    for entry in raw:
        link = resolve(fetched.final_url, entry.get("link") or "")
        key = entry.get("id") or link
        if not key:
            continue
        out.append(
            {
                "key": str(key),
                "link": link,
                "title": entry.get("title"),
                # dict.get: feedparser maps a missing "updated" to "published", with a warning
                "version": dict.get(entry, "updated") or entry.get("published") or "",
                "published": entry.get("published"),
                "html": _content(entry),
            }
        )
    return out


def _content(entry: Any) -> str:
    for part in entry.get("content") or []:
        if part.get("value"):
            return str(part["value"])
    return str(entry.get("summary") or "")


def _changed(entry: dict[str, Any], seen: dict[str, dict[str, Any]]) -> bool:
    known = seen.get(entry["key"])
    return known is None or known.get("version") != entry["version"]


def _crawl_links(
    crawler: crawl.Crawler, feed: str, new: list[dict[str, Any]], seen: dict[str, dict[str, Any]]
) -> None:
    """Each new entry's page, through the crawler; the entry links are the whole scope."""
    tasks = []
    for entry in new:
        if entry["link"]:
            crawler.scope.exact.add(entry["link"])
            meta = {"feed": feed, "feed_entry": entry["key"], "published": entry["published"]}
            tasks.append(crawl.Task(entry["link"], 0, root=True, meta=meta))
    crawler.crawl(tasks)
    for entry in new:
        outcome, doc = crawler.outcomes.get(entry["link"] or "", (download.FAILED, None))
        if outcome != download.FAILED:  # a failed page is tried again next run
            seen[entry["key"]] = {"version": entry["version"], "doc": doc}


def _store_contents(
    run: SourceRun, feed: str, new: list[dict[str, Any]], seen: dict[str, dict[str, Any]]
) -> None:
    """``use_entry_content``: each new entry's own content, as Markdown under its title."""
    for entry in new:
        text = html2md.fragment_to_markdown(entry["html"])
        uri = entry["link"] or entry["key"]
        if text.strip():
            if entry["title"]:
                text = f"# {entry['title']}\n\n{text}"
            meta = {
                "url": entry["link"],
                "title": entry["title"],
                "feed": feed,
                "feed_entry": entry["key"],
                "published": entry["published"],
            }
            meta = {k: v for k, v in meta.items() if v}
            run.put(FetchedDocument(uri=uri, text=text, kind="markdown", meta=meta))
        seen[entry["key"]] = {"version": entry["version"], "doc": uri if text.strip() else None}


def _forget_oldest(seen: dict[str, dict[str, Any]]) -> None:
    for key in list(seen)[: max(0, len(seen) - MAX_REMEMBERED)]:
        del seen[key]
