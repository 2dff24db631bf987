"""The feed source against RSS and Atom feeds served on loopback: new entries fetch their
pages (conditional GET on the feed and the pages), entry content when configured, robots.txt
for entry links, re-runs that add nothing, YouTube feeds, broken feeds."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Response

from aicoderd.errors import SourceError
from aicoderd.sources.feeds import video_ids_from_feed
from tests.integration.site import Site, docs_page, run_source, stored

KEY = "feed:news"


@pytest.fixture
def site() -> Iterator[Site]:
    with Site.serve() as s:
        yield s


def rss(site: Site, items: list[tuple[str, str]]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>{site.url(path)}</link>"
        f"<guid>{site.url(path)}</guid><pubDate>Sat, 02 Mar 2024 10:00:00 GMT</pubDate></item>"
        for title, path in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>News</title><link>{site.url('/')}</link><description>d</description>"
        f"{entries}</channel></rss>"
    )


def feed_source(site: Site, **options: Any) -> dict[str, Any]:
    return {
        "name": "news",
        "type": "feed",
        "url": site.url("/feed.xml"),
        "requests_per_second": 1000,
        "backoff_seconds": 0.05,
        "retries": 1,
        **options,
    }


def test_rss_entries_fetch_their_pages_once(site: Site, tmp_path: Path) -> None:
    site.page("/robots.txt", "User-agent: *\nDisallow: /posts/private-*\n", "text/plain")
    items = [("One", "/posts/one.html"), ("Two", "/posts/two.html")]
    items.append(("Hidden", "/posts/private-three.html"))
    for title, path in items:
        links = ["/posts/elsewhere.html"]  # entry pages' own links are not followed
        site.page(path, docs_page(title, f"<p>The {title} post.</p>", links))
    site.page("/posts/elsewhere.html", docs_page("Elsewhere", "<p>Not an entry.</p>"))
    site.page("/feed.xml", rss(site, items), "application/rss+xml")

    first = run_source(tmp_path, feed_source(site))
    docs = stored(tmp_path, KEY)
    assert set(docs) == {site.url("/posts/one.html"), site.url("/posts/two.html")}
    assert first["added"] == 2
    assert docs[site.url("/posts/one.html")][1]["feed"] == site.url("/feed.xml")
    assert "/posts/private-three.html" not in site.paths()
    assert first["errors"] == [
        f"{site.url('/posts/private-three.html')}: robots: disallowed by robots.txt"
    ]
    assert "/posts/elsewhere.html" not in site.paths()

    site.forget()
    second = run_source(tmp_path, feed_source(site))  # the feed answers 304
    assert (second.get("added", 0), second["unchanged"]) == (0, 2)
    assert site.statuses() == {"/robots.txt": [200], "/feed.xml": [304]}

    items.insert(0, ("Four", "/posts/four.html"))
    site.page("/posts/four.html", docs_page("Four", "<p>The newest post.</p>"))
    site.page("/feed.xml", rss(site, items), "application/rss+xml")
    site.forget()
    third = run_source(tmp_path, feed_source(site))
    assert (third["added"], third["unchanged"]) == (1, 2)
    assert [p for p in site.paths() if p.startswith("/posts/")] == ["/posts/four.html"]

    items.pop()  # an entry leaves the window: its document stays
    items.pop()
    site.page("/feed.xml", rss(site, items), "application/rss+xml")
    fourth = run_source(tmp_path, feed_source(site))
    assert fourth.get("retired", 0) == 0 and len(stored(tmp_path, KEY)) == 3


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Release notes</title>
  <id>urn:example:notes</id>
  <updated>2024-03-02T10:00:00Z</updated>
  <entry>
    <title>Widgets 2.1</title>
    <id>urn:example:notes:2.1</id>
    <link href="{link}"/>
    <updated>{updated}</updated>
    <content type="html">{content}</content>
  </entry>
</feed>
"""
CODE = 'def main():\n    run()\n\n\n    return "<ok>" if a < b & c else None\n'
# The entry's HTML, escaped once more to sit in the XML.
CONTENT = html.escape(
    f'<p>What changed:</p><pre><code class="language-python">{html.escape(CODE)}</code></pre>'
)


def test_atom_entry_content_is_stored_with_exact_code(site: Site, tmp_path: Path) -> None:
    link = site.url("/notes/2.1.html")
    body = ATOM.format(link=link, updated="2024-03-02T10:00:00Z", content=CONTENT)
    site.page("/feed.xml", body, "application/atom+xml")
    config = feed_source(site, use_entry_content=True)
    assert run_source(tmp_path, config)["added"] == 1
    text, meta = stored(tmp_path, KEY)[link]
    assert text == f"# Widgets 2.1\n\nWhat changed:\n\n```python\n{CODE}```\n"
    assert meta["feed_entry"] == "urn:example:notes:2.1"
    assert "/notes/2.1.html" not in site.paths()  # the content was enough

    updated = ATOM.format(
        link=link, updated="2024-03-05T10:00:00Z", content=CONTENT.replace("run()", "go()")
    )
    site.page("/feed.xml", updated, "application/atom+xml")
    again = run_source(tmp_path, config)
    assert again["updated"] == 1
    assert "go()" in stored(tmp_path, KEY)[link][0]


YOUTUBE = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015"
      xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
 <link rel="self" href="http://www.youtube.com/feeds/videos.xml?channel_id=UCaaaaaaaaaaaaaaaaaaaaaa"/>
 <id>yt:channel:aaaaaaaaaaaaaaaaaaaaaa</id>
 <yt:channelId>aaaaaaaaaaaaaaaaaaaaaa</yt:channelId>
 <title>A channel</title>
 <entry>
  <id>yt:video:AAAAAAAAAA1</id>
  <yt:videoId>AAAAAAAAAA1</yt:videoId>
  <title>Newest</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v=AAAAAAAAAA1"/>
  <published>2024-03-02T10:00:00+00:00</published>
 </entry>
 <entry>
  <id>yt:video:BBBBBBBBB-2</id>
  <yt:videoId>BBBBBBBBB-2</yt:videoId>
  <title>Older</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v=BBBBBBBBB-2"/>
  <published>2024-03-01T10:00:00+00:00</published>
 </entry>
 <entry>
  <id>yt:video:AAAAAAAAAA1</id>
  <yt:videoId>AAAAAAAAAA1</yt:videoId>
  <title>Newest, listed twice</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v=AAAAAAAAAA1"/>
 </entry>
</feed>
"""


def test_video_ids_of_a_youtube_feed() -> None:
    assert video_ids_from_feed(YOUTUBE.encode()) == ["AAAAAAAAAA1", "BBBBBBBBB-2"]
    playlist = YOUTUBE.replace("<yt:videoId>BBBBBBBBB-2</yt:videoId>", "")
    assert video_ids_from_feed(playlist.encode()) == ["AAAAAAAAAA1", "BBBBBBBBB-2"]  # from link
    with pytest.raises(SourceError):
        video_ids_from_feed(b"<html><body>not a feed</body></html>")


def test_a_youtube_feed_in_a_feed_source_says_what_to_do(site: Site, tmp_path: Path) -> None:
    site.page("/feed.xml", YOUTUBE, "application/atom+xml")
    with pytest.raises(SourceError, match="youtube source"):
        run_source(tmp_path, feed_source(site))
    assert [p for p in site.paths() if "watch" in p] == []


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [(500, "down", "http_500"), (200, "<html><body><p>Not a feed</p></body></html>", "not an RSS")],
)
def test_a_broken_feed_fails_the_run(
    site: Site, tmp_path: Path, status: int, body: str, message: str
) -> None:
    site.handler("/feed.xml", lambda r: Response(body, status=status, content_type="text/html"))
    with pytest.raises(SourceError, match=message):
        run_source(tmp_path, feed_source(site))


def test_an_entry_whose_page_failed_is_tried_again(site: Site, tmp_path: Path) -> None:
    items = [("Ok", "/posts/ok.html"), ("Flaky", "/posts/flaky.html")]
    site.page("/posts/ok.html", docs_page("Ok", "<p>Fine.</p>"))
    site.handler("/posts/flaky.html", lambda r: Response("down", status=502))
    site.page("/feed.xml", rss(site, items), "application/rss+xml")
    first = run_source(tmp_path, feed_source(site))
    assert (first["added"], first["failed"]) == (1, 1)

    site.page("/posts/flaky.html", docs_page("Flaky", "<p>Back up.</p>"))
    site.forget()
    second = run_source(tmp_path, feed_source(site))  # the feed did not change...
    assert (second["added"], second["unchanged"]) == (1, 1)  # ...but the failed entry is retried
    assert site.statuses()["/feed.xml"] == [200]
    assert "/posts/ok.html" not in site.paths()


@pytest.mark.parametrize("use_entry_content", [False, True])
def test_a_feed_without_validators_rerun_on_unchanged_input_adds_nothing(
    site: Site, tmp_path: Path, use_entry_content: bool
) -> None:
    items = [("One", "/posts/one.html"), ("Two", "/posts/two.html")]
    for title, path in items:
        site.page(path, docs_page(title, f"<p>The {title} post.</p>"))
    # No ETag, no Last-Modified: every run gets the whole feed again.
    feed = rss(site, items).replace(
        "</title><link>", "</title><description>Some news.</description><link>"
    )
    site.page("/feed.xml", feed, "application/rss+xml", etag=False, last_modified=False)
    config = feed_source(site, use_entry_content=use_entry_content)
    first = run_source(tmp_path, config)
    assert first["added"] == 2
    docs = stored(tmp_path, KEY)

    site.forget()
    again = run_source(tmp_path, config)
    assert (again.get("added", 0), again.get("updated", 0), again["unchanged"]) == (0, 0, 2)
    assert [p for p in site.paths() if p != "/robots.txt"] == ["/feed.xml"]  # no page asked
    assert stored(tmp_path, KEY) == docs
