"""Source type ``youtube``: the transcripts of listed videos and of the videos of channels
and playlists.

Transcripts come from youtube-transcript-api 1.x on a ``requests.Session`` made here (timeouts,
the configured proxy) and injectable, which is how the tests point it at a loopback server.
A manually made transcript in a wanted language is preferred over a generated one; with
``translate_to`` a transcript in another language is translated. The text is stored as
paragraphs under a header with the video's title and URL.

A video stored once is kept, not fetched again (``run.state["videos"]``). A video without a
usable transcript is recorded with its reason and asked again only after
``retry_failed_seconds``. When YouTube blocks us (HTTP 429, ``RequestBlocked``) the run stops,
retires nothing, and the whole source waits ``blocked_backoff_seconds`` (doubled per block in a
row) before it asks YouTube anything again. Channel and playlist feeds list only the newest
videos, so the ids of each feed are remembered: a video that leaves the feed keeps its document.

With ``proxy`` every request goes through it: the library's (``requests``) and the channel
feeds' (httpx), HTTPS as ``CONNECT`` tunnels. Behind a TLS-inspecting proxy, its CA is trusted
through the standard variables each client reads, ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE``
(the daemon test runs the whole source that way, against a loopback proxy and fake).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import requests
import youtube_transcript_api as yta
from requests.adapters import HTTPAdapter
from youtube_transcript_api import (
    CouldNotRetrieveTranscript,
    FetchedTranscript,
    NoTranscriptFound,
    RequestBlocked,
    Transcript,
    TranscriptList,
    YouTubeTranscriptApi,
)
from youtube_transcript_api.proxies import GenericProxyConfig

from aicoderd.config import YoutubeSource
from aicoderd.errors import SourceError
from aicoderd.sources.base import FetchedDocument, SourceRun
from aicoderd.sources.feeds import video_ids_from_feed

WATCH_URL = "https://www.youtube.com/watch?v={}"
FEED_URL = "https://www.youtube.com/feeds/videos.xml?channel_id={}"
PLAYLIST_FEED_URL = "https://www.youtube.com/feeds/videos.xml?playlist_id={}"
MAX_BACKOFF_SECONDS = 7 * 86400.0
MAX_REMEMBERED_PER_CHANNEL = 1000  # a channel's ids kept in run.state, newest first

# Paragraphs: a pause this long starts one; so does a sentence end once one is this long, and
# any snippet boundary once one is far too long (generated captions have no punctuation).
PAUSE_SECONDS = 2.0
PARAGRAPH_CHARS = 600
MAX_PARAGRAPH_CHARS = 1500
_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*$")
_NOISE = re.compile(r"\[(?:music|applause|laughter|inaudible|silence|__)\]", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_META_TITLE = re.compile(r'<meta\s+(?:name="title"|property="og:title")\s+content="([^"]*)"')

# Failures of one video: (reason recorded, permanent?). Permanent ones wait
# retry_failed_seconds; the others are tried again next run. Looked up along the class's MRO.
_FAILURES: dict[type[CouldNotRetrieveTranscript], tuple[str, bool]] = {
    yta.TranscriptsDisabled: ("transcripts_disabled", True),
    yta.NoTranscriptFound: ("no_transcript_in_languages", True),
    yta.NotTranslatable: ("not_translatable", True),
    yta.TranslationLanguageNotAvailable: ("translation_unavailable", True),
    yta.VideoUnavailable: ("video_unavailable", True),
    yta.InvalidVideoId: ("invalid_video_id", True),
    yta.AgeRestricted: ("age_restricted", True),
    yta.VideoUnplayable: ("video_unplayable", True),
    yta.PoTokenRequired: ("po_token_required", False),
    yta.YouTubeDataUnparsable: ("unparsable_response", False),
    yta.YouTubeRequestFailed: ("request_failed", False),
    yta.FailedToCreateConsentCookie: ("consent_cookie", False),
}


class TimeoutAdapter(HTTPAdapter):
    """The library sends without a timeout; every request gets ours."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        timeout = self.timeout if timeout is None else timeout
        return super().send(request, stream, timeout, verify, cert, proxies)


def http_session(config: YoutubeSource) -> requests.Session:
    session = requests.Session()
    adapter = TimeoutAdapter(config.timeout_seconds)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def fetch(run: SourceRun) -> None:
    config = _config(run)
    proxy = {"proxy": str(config.proxy)} if config.proxy else {}
    with http_session(config) as session, run.http_client(**proxy) as feeds:
        sync(run, session, feeds)


def sync(run: SourceRun, session: requests.Session, feeds: httpx.Client) -> None:
    """One run with the given HTTP clients: ``session`` for YouTube's pages and the library,
    ``feeds`` (httpx) for the channel feeds."""
    config = _config(run)
    proxy = str(config.proxy) if config.proxy else None
    api = YouTubeTranscriptApi(
        proxy_config=GenericProxyConfig(http_url=proxy) if proxy else None, http_client=session
    )
    page = _PageInfo()
    session.hooks["response"].append(page.hook)
    videos = _Videos(run, config, api, page)
    ids = list(dict.fromkeys([*config.videos, *_channel_videos(run, config, feeds)]))
    videos.fetch_all(ids)
    videos.forget_others(ids)


def _config(run: SourceRun) -> YoutubeSource:
    if not isinstance(run.config, YoutubeSource):
        raise SourceError(f"source {run.name} is not a youtube source")
    return run.config


def _channel_videos(run: SourceRun, config: YoutubeSource, feeds: httpx.Client) -> list[str]:
    """Every video id ever seen in the channels' and playlists' feeds, newest first."""
    remembered: dict[str, list[str]] = run.state.setdefault("channels", {})  # feed id → ids
    feeds_by_id = {c: FEED_URL.format(c) for c in config.channels}
    feeds_by_id |= {p: PLAYLIST_FEED_URL.format(p) for p in config.playlists}
    for feed_id in list(remembered):
        if feed_id not in feeds_by_id:
            del remembered[feed_id]
    ids: list[str] = []
    for channel, url in feeds_by_id.items():
        known = remembered.get(channel, [])
        try:
            response = feeds.get(url)
            response.raise_for_status()
            found = video_ids_from_feed(response.content)
        except (httpx.HTTPError, SourceError) as exc:
            run.fail(url, "feed_failed", str(exc) or type(exc).__name__)
            found = []
        merged = list(dict.fromkeys([*found, *known]))[:MAX_REMEMBERED_PER_CHANNEL]
        remembered[channel] = merged
        ids += merged
    return ids


# -- one video ----------------------------------------------------------------------------------


@dataclass
class _PageInfo:
    """Title and channel of the video being fetched, read from the responses the library gets
    anyway (the player response, else the watch page), so no request is added for them."""

    title: str | None = None
    channel: str | None = None
    channel_id: str | None = None

    def reset(self) -> None:
        self.title = self.channel = self.channel_id = None

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        path = urlsplit(response.url).path
        try:
            if path.endswith("/youtubei/v1/player") and response.ok:
                details = response.json().get("videoDetails") or {}
                self.title = details.get("title") or self.title
                self.channel = details.get("author") or self.channel
                self.channel_id = details.get("channelId") or self.channel_id
            elif path == "/watch" and response.ok and self.title is None:
                found = _META_TITLE.search(response.text)
                self.title = html.unescape(found.group(1)) if found else None
        except (ValueError, AttributeError):
            pass  # not the shape we know: the title falls back to the video id
        return response


class _Videos:
    def __init__(
        self, run: SourceRun, config: YoutubeSource, api: YouTubeTranscriptApi, page: _PageInfo
    ) -> None:
        self.run = run
        self.config = config
        self.api = api
        self.page = page
        self.state: dict[str, dict[str, Any]] = run.state.setdefault("videos", {})
        # What a stored transcript was chosen by: another choice fetches it again.
        self.wanted = [*config.languages, f"->{config.translate_to or ''}"]

    def fetch_all(self, ids: list[str]) -> None:
        now = time.time()
        blocked_until = float(self.run.state.get("blocked_until", 0))
        asked = False
        for video in ids:
            if self.run.cancelled:
                self.run.complete = False
                return
            if self._kept(video, now):
                continue
            if blocked_until > now:
                self._backing_off(video, blocked_until)
                continue
            if asked and self.config.video_interval_seconds:
                time.sleep(self.config.video_interval_seconds)
            asked = True
            if not self._fetch(video, now):
                blocked_until = float(self.run.state["blocked_until"])
        if blocked_until <= now:
            self.run.state["blocks_in_a_row"] = 0

    def forget_others(self, ids: Iterable[str]) -> None:
        """State of videos no longer configured goes (their documents are retired by finish)."""
        if self.run.complete:
            keep = set(ids)
            for video in [v for v in self.state if v not in keep]:
                del self.state[video]

    def _kept(self, video: str, now: float) -> bool:
        """True when the video needs no request this run (stored, or failed recently)."""
        known = self.state.get(video)
        if known is None or known.get("wanted") != self.wanted:
            return False
        uri = WATCH_URL.format(video)
        if known["status"] == "stored":
            if self.run.is_stored(uri):
                self.run.keep(uri)
                return True
            return False
        if float(known.get("retry_after", 0)) > now:
            self.run.counts["skipped"] += 1
            return True
        return False

    def _backing_off(self, video: str, until: float) -> None:
        self.run.complete = False
        when = datetime.fromtimestamp(until, UTC).isoformat(timespec="minutes")
        self.run.fail(
            WATCH_URL.format(video), "backoff", f"YouTube blocked us; asking again after {when}"
        )

    def _fetch(self, video: str, now: float) -> bool:
        """Fetch and store one transcript; False when YouTube blocked the request."""
        uri = WATCH_URL.format(video)
        self.page.reset()
        try:
            transcript, translated_from = _choose(self.api.list(video), self.config)
            fetched = transcript.fetch()
        except RequestBlocked as exc:
            self._blocked(uri, exc, now)
            return False
        except CouldNotRetrieveTranscript as exc:
            reason, permanent = _failure(exc)
            self._failed(video, uri, reason, _cause(exc), now, permanent)
            return True
        except requests.RequestException as exc:
            self._failed(video, uri, "network", str(exc), now, permanent=False)
            return True
        doc = _document(video, fetched, translated_from, self.page)
        self.run.put(doc)
        self.state[video] = {"status": "stored", "wanted": self.wanted, "at": now}
        return True

    def _blocked(self, uri: str, exc: RequestBlocked, now: float) -> None:
        strikes = int(self.run.state.get("blocks_in_a_row", 0)) + 1
        wait = min(self.config.blocked_backoff_seconds * 2 ** (strikes - 1), MAX_BACKOFF_SECONDS)
        self.run.state.update(blocks_in_a_row=strikes, blocked_until=now + wait)
        self.run.complete = False
        kind = "HTTP 429 / IP blocked" if isinstance(exc, yta.IpBlocked) else "request blocked"
        self.run.fail(uri, "blocked", f"{kind} by YouTube; backing off {wait / 3600:.1f} h")

    def _failed(
        self, video: str, uri: str, reason: str, message: str, now: float, permanent: bool
    ) -> None:
        retry = now + self.config.retry_failed_seconds if permanent else 0.0
        self.state[video] = {
            "status": "failed",
            "reason": reason,
            "wanted": self.wanted,
            "at": now,
            "retry_after": retry,
        }
        self.run.fail(uri, reason, message)


def _choose(listing: TranscriptList, config: YoutubeSource) -> tuple[Transcript, str | None]:
    """Manual before generated in the wanted languages; else, when translating, any
    translatable one; then translated to ``translate_to`` if it is in another language.
    Returns the transcript and the language it was translated from, if it was."""
    finders: list[Callable[[Iterable[str]], Transcript]] = [
        listing.find_manually_created_transcript,
        listing.find_generated_transcript,
    ]
    chosen = None
    for find in finders:
        try:
            chosen = find(config.languages)
            break
        except NoTranscriptFound:
            continue
    target = config.translate_to
    if chosen is None and target:
        chosen = next((t for t in listing if t.is_translatable), None)
    if chosen is None:
        raise NoTranscriptFound(listing.video_id, config.languages, listing)
    if target and chosen.language_code != target:
        return chosen.translate(target), chosen.language_code
    return chosen, None


def _failure(exc: CouldNotRetrieveTranscript) -> tuple[str, bool]:
    for cls in type(exc).__mro__:
        if cls in _FAILURES:
            return _FAILURES[cls]
    return "failed", False


def _cause(exc: CouldNotRetrieveTranscript) -> str:
    """The library's one-line cause, without its multi-paragraph preamble."""
    cause = str(getattr(exc, "cause", "") or type(exc).__name__)
    return _SPACE.sub(" ", cause).strip()


# -- the document -------------------------------------------------------------------------------


def _document(
    video: str, fetched: FetchedTranscript, translated_from: str | None, page: _PageInfo
) -> FetchedDocument:
    url = WATCH_URL.format(video)
    title = page.title or video
    kind = "generated" if fetched.is_generated else "manual"
    about = f"{fetched.language} ({fetched.language_code}), {kind}"
    if translated_from:
        about += f", translated from {translated_from}"
    header = [f"# {title}", "", url]
    if page.channel:
        header.append(f"Channel: {page.channel}")
    header.append(f"Transcript: {about}")
    text = "\n".join(header) + "\n\n" + "\n\n".join(paragraphs(fetched.snippets)) + "\n"
    meta = {
        "video_id": video,
        "url": url,
        "title": title,
        "channel": page.channel,
        "channel_id": page.channel_id,
        "language": fetched.language_code,
        "generated": fetched.is_generated,
        "translated_from": translated_from,
    }
    return FetchedDocument(url, text, "transcript", None, meta)


def paragraphs(snippets: Iterable[Any]) -> list[str]:
    """Caption snippets joined into paragraphs: broken at pauses and at sentence ends."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    last_end: float | None = None
    ends_sentence = False
    for snippet in snippets:
        text = _SPACE.sub(" ", _NOISE.sub(" ", snippet.text)).strip()
        if not text:
            continue
        pause = last_end is not None and snippet.start - last_end >= PAUSE_SECONDS
        long_enough = size >= PARAGRAPH_CHARS and ends_sentence
        if current and (pause or long_enough or size >= MAX_PARAGRAPH_CHARS):
            out.append(" ".join(current))
            current, size = [], 0
        current.append(text)
        size += len(text) + 1
        last_end = snippet.start + snippet.duration
        ends_sentence = bool(_SENTENCE_END.search(text))
    if current:
        out.append(" ".join(current))
    return out
