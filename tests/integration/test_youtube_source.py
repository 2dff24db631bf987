"""The youtube source against a loopback fake of YouTube: a real HTTP server in a thread that
answers with the shapes youtube-transcript-api 1.x reads (the watch page with its
INNERTUBE_API_KEY, the innertube player response with captionTracks, the timedtext XML) and a
channel's Atom feed. The library's own ``requests.Session`` is injected, with an adapter that
rewrites www.youtube.com to the fake; so nothing here can touch the internet.

Covered: manual over generated transcripts, paragraphs, title and URL, no refetch of a stored
video, disabled transcripts, no transcript in the wanted languages, an unavailable video, a
translation, HTTP 429 → the whole source backs off and retires nothing, channel feeds, a proxy.

Once through the real daemon, unchanged: a ``type: youtube`` source in its config, run as the
``source.fetch`` job, with its configured ``proxy`` at a loopback CONNECT proxy that tunnels to
the fake served over TLS (a certificate for www.youtube.com from a CA made by the test, trusted
through the standard ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` variables, as behind a
TLS-inspecting proxy). Nothing in the daemon knows it is being tested."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import requests
from werkzeug import Request, Response
from werkzeug.serving import make_server

from aicoderd.config import Settings
from aicoderd.sources import youtube
from aicoderd.sources.base import SourceRun
from aicoderd.store import DocumentFiles, Store
from tests.conftest import DaemonProc, wait_for
from tests.integration import site

API_KEY = "AIzaFakeKeyForTests_0123456789"
CHANNEL = "UCaaaaaaaaaaaaaaaaaaaaaa"
PLAYLIST = "PLbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
KEY = "youtube:talks"


@dataclass
class Track:
    lang: str
    name: str
    generated: bool = False
    translatable: bool = True
    lines: list[tuple[float, float, str]] = field(default_factory=list)


@dataclass
class Video:
    title: str
    tracks: list[Track] = field(default_factory=list)
    status: str = "OK"  # or "ERROR": unavailable
    captions: bool = True  # False: transcripts disabled
    throttled: bool = False  # the watch page answers 429
    details: bool = True  # False: the player response has no videoDetails


class FakeYouTube:
    """www.youtube.com as youtube-transcript-api sees it, on 127.0.0.1."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.videos: dict[str, Video] = {}
        self.feed_ids: list[str] | None = []  # None: the feed answers 500
        self.hits: list[str] = []  # "METHOD host/path?query" of every request
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, ssl_context=tls)
        self.port = self.server.server_port
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeYouTube:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join(5)

    @Request.application  # type: ignore[misc]
    def app(self, request: Request) -> Response:
        self.hits.append(f"{request.method} {request.host}{request.full_path.rstrip('?')}")
        handler = {
            "/watch": self.watch,
            "/youtubei/v1/player": self.player,
            "/api/timedtext": self.timedtext,
            "/feeds/videos.xml": self.feed,
        }.get(request.path)
        return handler(request) if handler else Response("not found", status=404)

    def watch(self, request: Request) -> Response:
        video = self.videos.get(request.args["v"])
        if video is not None and video.throttled:
            return Response("Too Many Requests", status=429)
        title = video.title if video else "YouTube"
        page = (
            f'<html><head><title>{title} - YouTube</title><meta name="title" content="{title}">'
            f'</head><body><script>ytcfg.set({{"INNERTUBE_API_KEY": "{API_KEY}",'
            f' "INNERTUBE_CLIENT_NAME": "WEB"}});</script></body></html>'
        )
        return Response(page, content_type="text/html; charset=utf-8")

    def player(self, request: Request) -> Response:
        assert request.args["key"] == API_KEY
        body = request.get_json()
        assert body["context"]["client"]["clientName"] == "ANDROID"
        video_id = body["videoId"]
        video = self.videos.get(video_id)
        if video is None or video.status != "OK":
            status = {"status": "ERROR", "reason": "This video is unavailable"}
            return Response(
                json.dumps({"playabilityStatus": status}), content_type="application/json"
            )
        data: dict[str, Any] = {"playabilityStatus": {"status": "OK"}}
        if video.details:
            data["videoDetails"] = {
                "videoId": video_id,
                "title": video.title,
                "author": "Widget Talks",
                "channelId": CHANNEL,
            }
        if video.captions:
            base = f"https://www.youtube.com/api/timedtext?v={video_id}"
            data["captions"] = {
                "playerCaptionsTracklistRenderer": {
                    "captionTracks": [
                        {
                            "baseUrl": f"{base}&lang={t.lang}{kind(t)}&fmt=srv3",
                            "name": {"runs": [{"text": t.name}]},
                            "languageCode": t.lang,
                            **({"kind": "asr"} if t.generated else {}),
                            "isTranslatable": t.translatable,
                        }
                        for t in video.tracks
                    ],
                    "translationLanguages": [
                        {"languageCode": "en", "languageName": {"runs": [{"text": "English"}]}},
                        {"languageCode": "de", "languageName": {"runs": [{"text": "German"}]}},
                    ],
                }
            }
        return Response(json.dumps(data), content_type="application/json")

    def timedtext(self, request: Request) -> Response:
        video = self.videos[request.args["v"]]
        generated = request.args.get("kind") == "asr"
        track = next(
            t for t in video.tracks if t.lang == request.args["lang"] and t.generated == generated
        )
        lines = track.lines
        if "tlang" in request.args:  # a machine translation, marked so the test can see it
            lines = [(s, d, f"[{request.args['tlang']}] {text}") for s, d, text in lines]
        texts = "".join(
            f'<text start="{s}" dur="{d}">{_escape(text)}</text>' for s, d, text in lines
        )
        xml = f'<?xml version="1.0" encoding="utf-8" ?><transcript>{texts}</transcript>'
        return Response(xml, content_type="text/xml; charset=UTF-8")

    def feed(self, request: Request) -> Response:
        assert request.args.get("channel_id", CHANNEL) == CHANNEL
        assert request.args.get("playlist_id", PLAYLIST) == PLAYLIST
        if self.feed_ids is None:
            return Response("oops", status=500)
        entries = "".join(
            f"<entry><id>yt:video:{v}</id><yt:videoId>{v}</yt:videoId>"
            f"<yt:channelId>{CHANNEL}</yt:channelId><title>Video {v}</title>"
            f'<link rel="alternate" href="https://www.youtube.com/watch?v={v}"/>'
            "<published>2024-01-01T00:00:00+00:00</published></entry>"
            for v in self.feed_ids
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?><feed xmlns:yt="http://www.youtube.com/xml/'
            'schemas/2015" xmlns="http://www.w3.org/2005/Atom">'
            f"<id>yt:channel:{CHANNEL}</id><title>Widget Talks</title>{entries}</feed>"
        )
        return Response(xml, content_type="text/xml; charset=UTF-8")

    def youtube_hits(self) -> list[str]:
        return [h for h in self.hits if "/feeds/" not in h]


def kind(track: Track) -> str:
    return "&kind=asr" if track.generated else ""


def _escape(text: str) -> str:
    # timedtext escapes twice: the XML layer, and HTML entities inside the text.
    return text.replace("&", "&amp;amp;").replace("'", "&amp;#39;").replace("<", "&amp;lt;")


class ToFake(youtube.TimeoutAdapter):
    """Sends what the library asks of www.youtube.com to the fake instead. With ``via_proxy``
    the host becomes one that never resolves, so only a proxy (the fake) can answer."""

    def __init__(self, port: int, via_proxy: bool = False) -> None:
        super().__init__(timeout=10)
        self.port = port
        self.via_proxy = via_proxy
        self.proxies_seen: list[dict[str, str] | None] = []

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        assert parts.hostname == "www.youtube.com", request.url
        host = "www.youtube.invalid" if self.via_proxy else f"127.0.0.1:{self.port}"
        request.url = urlunsplit(("http", host, parts.path, parts.query, ""))
        self.proxies_seen.append(kwargs.get("proxies"))
        return super().send(request, *args, **kwargs)


class FeedsToFake(httpx.HTTPTransport):
    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "www.youtube.com"
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return super().handle_request(request)


class FakeRun(SourceRun):
    adapter: ToFake


def run_once(data_dir: Path, fake: FakeYouTube, via_proxy: bool = False, **options: Any) -> FakeRun:
    """One run as the ``source.fetch`` job does it, with the HTTP clients aimed at the fake."""
    config = {"name": "talks", "type": "youtube", "video_interval_seconds": 0, **options}
    settings = Settings(data_dir=data_dir, socket=data_dir / "s.sock", folders=[], sources=[config])
    store = Store(settings.state_db)
    run = FakeRun(
        config=settings.sources[0],
        settings=settings,
        store=store,
        files=DocumentFiles(settings.documents_dir),
        state=store.sources.state("talks"),
    )
    session = youtube.http_session(run.config)  # type: ignore[arg-type]
    session.trust_env = False  # no proxy from the test machine's environment
    adapter = ToFake(fake.port, via_proxy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    run.adapter = adapter
    try:
        with session, run.http_client(transport=FeedsToFake(fake.port)) as feeds:
            youtube.sync(run, session, feeds)
        run.finish()
        store.sources.save_state("talks", run.state)
    finally:
        store.close()
    return run


def stored(data_dir: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Video id → (text, meta) of the documents the source holds now."""
    return {uri.rsplit("=", 1)[1]: doc for uri, doc in site.stored(data_dir, KEY).items()}


def counts(run: SourceRun) -> dict[str, int]:
    return {k: v for k, v in run.counts.items() if v}


def reasons(run: SourceRun) -> dict[str, str]:
    """video id → the reason recorded for it."""
    out = {}
    for error in run.errors:
        uri, reason, _message = error.split(": ", 2)
        out[uri.rsplit("=", 1)[-1]] = reason
    return out


@pytest.fixture
def fake() -> Iterator[FakeYouTube]:
    with FakeYouTube() as f:
        yield f


ENGLISH = [
    (0.0, 1.5, "Hello and welcome."),
    (1.5, 2.0, "It's a talk about widgets & gadgets."),
    (3.5, 1.0, "[Music]"),
    (8.0, 2.0, "After a long pause,"),
    (10.0, 1.5, "more words."),
]


def test_transcripts_are_stored_as_paragraphs_and_not_fetched_again(
    fake: FakeYouTube, tmp_path: Path
) -> None:
    fake.videos["AAAAAAAAAA1"] = Video(
        "Widgets & Co",
        [
            Track("en", "English (auto-generated)", generated=True, lines=[(0, 1, "auto words")]),
            Track("en", "English", lines=ENGLISH),
        ],
    )
    fake.videos["BBBBBBBBB-2"] = Video(
        "Only generated", [Track("en", "English (auto-generated)", generated=True, lines=ENGLISH)]
    )
    videos = ["https://www.youtube.com/watch?v=AAAAAAAAAA1", "https://youtu.be/BBBBBBBBB-2"]
    run = run_once(tmp_path, fake, videos=videos)
    assert counts(run) == {"added": 2}
    docs = stored(tmp_path)
    text, meta = docs["AAAAAAAAAA1"]
    assert text == (
        "# Widgets & Co\n"
        "\n"
        "https://www.youtube.com/watch?v=AAAAAAAAAA1\n"
        "Channel: Widget Talks\n"
        "Transcript: English (en), manual\n"
        "\n"
        "Hello and welcome. It's a talk about widgets & gadgets.\n"
        "\n"
        "After a long pause, more words.\n"
    )
    assert meta == {
        "video_id": "AAAAAAAAAA1",
        "url": "https://www.youtube.com/watch?v=AAAAAAAAAA1",
        "title": "Widgets & Co",
        "channel": "Widget Talks",
        "channel_id": CHANNEL,
        "language": "en",
        "generated": False,
        "translated_from": None,
    }
    assert docs["BBBBBBBBB-2"][1]["generated"] is True
    assert "English (auto-generated) (en), generated" in docs["BBBBBBBBB-2"][0]

    # Stored and unchanged: not one request to YouTube, nothing added, nothing retired.
    before = len(fake.hits)
    again = run_once(tmp_path, fake, videos=videos)
    assert fake.hits[before:] == []
    assert counts(again) == {"unchanged": 2}
    assert stored(tmp_path) == docs

    # A video taken out of the configuration retires its document.
    run = run_once(tmp_path, fake, videos=videos[:1])
    assert counts(run) == {"unchanged": 1, "retired": 1} and set(stored(tmp_path)) == {
        "AAAAAAAAAA1"
    }


def test_each_failure_has_its_reason_and_is_not_asked_again_at_once(
    fake: FakeYouTube, tmp_path: Path
) -> None:
    fake.videos["disabled000"] = Video("No captions", captions=False)
    fake.videos["german00000"] = Video("Deutsch", [Track("de", "Deutsch", lines=ENGLISH)])
    fake.videos["gone0000000"] = Video("Gone", status="ERROR")
    fake.videos["fine0000000"] = Video("Fine", [Track("en", "English", lines=ENGLISH)])
    ids = ["disabled000", "german00000", "gone0000000", "fine0000000"]
    run = run_once(tmp_path, fake, videos=ids)
    assert reasons(run) == {
        "disabled000": "transcripts_disabled",
        "german00000": "no_transcript_in_languages",
        "gone0000000": "video_unavailable",
    }
    assert counts(run) == {"added": 1, "failed": 3}
    assert "Subtitles are disabled for this video" in run.errors[0]
    assert set(stored(tmp_path)) == {"fine0000000"}

    before = len(fake.hits)
    again = run_once(tmp_path, fake, videos=ids)
    assert fake.hits[before:] == []  # failures wait retry_failed_seconds
    assert counts(again) == {"unchanged": 1, "skipped": 3}

    # Once that time has passed they are asked again: German captions have appeared meanwhile
    # in a language now wanted.
    later = run_once(tmp_path, fake, videos=ids, languages=["en", "de"], retry_failed_seconds=0)
    assert counts(later) == {"unchanged": 1, "added": 1, "failed": 2}
    assert set(stored(tmp_path)) == {"fine0000000", "german00000"}


def test_a_manual_transcript_wins_over_a_generated_one_in_a_preferred_language(
    fake: FakeYouTube, tmp_path: Path
) -> None:
    fake.videos["bilingual01"] = Video(
        "Zwei &amp; Sprachen",
        [
            Track("de", "Deutsch (automatisch)", generated=True, lines=[(0, 1, "automatisch")]),
            Track("en", "English", lines=[(0, 1, "by hand")]),
        ],
        details=False,  # so the title comes from the watch page's <meta name="title">
    )
    run_once(tmp_path, fake, videos=["bilingual01"], languages=["de", "en"])
    text, meta = stored(tmp_path)["bilingual01"]
    assert text == (
        "# Zwei & Sprachen\n\nhttps://www.youtube.com/watch?v=bilingual01\n"
        "Transcript: English (en), manual\n\nby hand\n"
    )
    assert (meta["language"], meta["generated"], meta["channel"]) == ("en", False, None)


def test_a_translation(fake: FakeYouTube, tmp_path: Path) -> None:
    fake.videos["deutsch0001"] = Video("Vortrag", [Track("de", "Deutsch", lines=ENGLISH[:2])])
    fake.videos["french00001"] = Video("Exposé", [Track("fr", "Français", translatable=False)])
    run = run_once(
        tmp_path,
        fake,
        videos=["deutsch0001", "french00001"],
        languages=["de", "fr"],
        translate_to="en",
    )
    assert reasons(run) == {"french00001": "not_translatable"}
    text, meta = stored(tmp_path)["deutsch0001"]
    assert "Transcript: English (en), generated, translated from de" in text
    assert "[en] Hello and welcome. [en] It's a talk about widgets & gadgets." in text
    assert (meta["language"], meta["translated_from"]) == ("en", "de")
    assert any("tlang=en" in hit for hit in fake.hits)


def test_http_429_backs_off_the_whole_source_and_retires_nothing(
    fake: FakeYouTube, tmp_path: Path
) -> None:
    for vid in ("old00000000", "first000000", "throttled00", "later000000"):
        fake.videos[vid] = Video(vid, [Track("en", "English", lines=ENGLISH)])
    run_once(tmp_path, fake, videos=["old00000000"])

    fake.videos["throttled00"].throttled = True
    ids = ["first000000", "throttled00", "later000000"]
    run = run_once(tmp_path, fake, videos=ids, blocked_backoff_seconds=3600)
    assert reasons(run) == {"throttled00": "blocked", "later000000": "backoff"}
    assert "HTTP 429" in run.errors[0]
    assert not any("later000000" in hit for hit in fake.hits)  # not asked after the block
    assert run.complete is False and counts(run) == {"added": 1, "failed": 2}
    assert set(stored(tmp_path)) == {"old00000000", "first000000"}  # nothing retired
    assert state_of(tmp_path)["blocked_until"] == pytest.approx(time.time() + 3600, abs=60)

    # While backing off not one request goes out; the videos wait with a clear reason.
    fake.videos["throttled00"].throttled = False
    before = len(fake.hits)
    run = run_once(tmp_path, fake, videos=ids, blocked_backoff_seconds=3600)
    assert fake.hits[before:] == []
    assert reasons(run) == {"throttled00": "backoff", "later000000": "backoff"}
    assert counts(run) == {"unchanged": 1, "failed": 2}

    # Blocked again right after the wait: the next wait is twice as long.
    _age_backoff(tmp_path)
    fake.videos["throttled00"].throttled = True
    run_once(tmp_path, fake, videos=ids, blocked_backoff_seconds=3600)
    state = state_of(tmp_path)
    assert state["blocks_in_a_row"] == 2
    assert state["blocked_until"] == pytest.approx(time.time() + 7200, abs=60)

    # Once the wait is over the rest is fetched, and the complete run retires the old video.
    _age_backoff(tmp_path)
    fake.videos["throttled00"].throttled = False
    run = run_once(tmp_path, fake, videos=ids, blocked_backoff_seconds=3600)
    assert counts(run) == {"unchanged": 1, "added": 2, "retired": 1}
    assert set(stored(tmp_path)) == set(ids)
    assert state_of(tmp_path)["blocks_in_a_row"] == 0


def state_of(data_dir: Path) -> dict[str, Any]:
    store = Store(data_dir / "state.db")
    state = store.sources.state("talks")
    store.close()
    return state


def _age_backoff(data_dir: Path) -> None:
    store = Store(data_dir / "state.db")
    state = store.sources.state("talks")
    state["blocked_until"] = time.time() - 1
    store.sources.save_state("talks", state)
    store.close()


def test_channel_feeds_add_videos_and_a_window_that_moves_retires_nothing(
    fake: FakeYouTube, tmp_path: Path
) -> None:
    for vid in ("chan0000001", "chan0000002", "chan0000003"):
        fake.videos[vid] = Video(vid, [Track("en", "English", lines=ENGLISH)])
    fake.feed_ids = ["chan0000002", "chan0000001"]
    run = run_once(tmp_path, fake, channels=[f"https://www.youtube.com/channel/{CHANNEL}"])
    assert counts(run) == {"added": 2}

    fake.feed_ids = ["chan0000003", "chan0000002"]  # chan0000001 left the feed's window
    run = run_once(tmp_path, fake, channels=[CHANNEL])
    assert counts(run) == {"added": 1, "unchanged": 2}
    assert set(stored(tmp_path)) == {"chan0000001", "chan0000002", "chan0000003"}

    fake.feed_ids = None  # the feed fails: recorded, and the known videos stay
    run = run_once(tmp_path, fake, channels=[CHANNEL])
    assert [e.split(": ")[1] for e in run.errors] == ["feed_failed"]
    assert counts(run) == {"unchanged": 3, "failed": 1}
    assert len(stored(tmp_path)) == 3


def test_a_playlist_feed_adds_its_videos(fake: FakeYouTube, tmp_path: Path) -> None:
    for vid in ("list0000001", "list0000002"):
        fake.videos[vid] = Video(vid, [Track("en", "English", lines=ENGLISH)])
    fake.feed_ids = ["list0000002", "list0000001"]
    url = f"https://www.youtube.com/playlist?list={PLAYLIST}"
    run = run_once(tmp_path, fake, playlists=[url])
    assert counts(run) == {"added": 2}
    assert f"GET www.youtube.com/feeds/videos.xml?playlist_id={PLAYLIST}" in fake.hits
    run = run_once(tmp_path, fake, playlists=[PLAYLIST])
    assert counts(run) == {"unchanged": 2}


def test_the_proxy_carries_every_request(fake: FakeYouTube, tmp_path: Path) -> None:
    fake.videos["proxied0001"] = Video("Via proxy", [Track("en", "English", lines=ENGLISH)])
    proxy = f"http://127.0.0.1:{fake.port}/"
    run = run_once(tmp_path, fake, via_proxy=True, videos=["proxied0001"], proxy=proxy)
    assert counts(run) == {"added": 1}
    # www.youtube.invalid resolves nowhere: the fake, as the proxy, answered every request.
    assert fake.youtube_hits() == [
        "GET www.youtube.invalid/watch?v=proxied0001",
        f"POST www.youtube.invalid/youtubei/v1/player?key={API_KEY}",
        "GET www.youtube.invalid/api/timedtext?v=proxied0001&lang=en",
    ]
    proxies = run.adapter.proxies_seen
    assert proxies and all(p == {"http": proxy, "https": proxy} for p in proxies)


def test_paragraphs_break_at_pauses_sentences_and_length() -> None:
    @dataclass
    class S:
        text: str
        start: float
        duration: float

    assert youtube.paragraphs(
        [S("a b", 0, 1), S("c.", 1, 1), S("[Music]", 2, 1), S("d", 5, 1)]
    ) == [
        "a b c.",
        "d",
    ]
    long = [S("word " * 20 + "end.", i * 2.0, 2.0) for i in range(10)]
    out = youtube.paragraphs(long)
    assert len(out) > 1 and all(p.endswith("end.") for p in out)
    assert all(len(p) < youtube.PARAGRAPH_CHARS + 200 for p in out)
    unpunctuated = youtube.paragraphs([S("word " * 10, i * 1.0, 1.0) for i in range(100)])
    assert len(unpunctuated) > 1
    assert all(len(p) <= youtube.MAX_PARAGRAPH_CHARS + 60 for p in unpunctuated)


# -- through the real daemon ----------------------------------------------------------------------


class ConnectProxy:
    """An HTTP proxy on loopback that only tunnels (``CONNECT``), whatever host is asked, to one
    port: the fake. It records every tunnel it opens."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.tunnels: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.tunnels.append(target)
            with socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
                back.start()
                _pipe(client, upstream)
                back.join(10)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def make_certificates(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM returned, for the clients to trust) and www.youtube.com's certificate
    signed by it (in the server context returned)."""
    ca, ca_key, key, csr, cert = (
        folder / n for n in ("ca.pem", "ca.key", "k.pem", "c.csr", "c.pem")
    )
    ext = folder / "ext.cnf"
    ext.write_text(
        "subjectAltName=DNS:www.youtube.com\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    sign = ["-CA", ca, "-CAkey", ca_key, "-set_serial", "2", "-extfile", ext]
    commands = [
        [
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-subj",
            "/CN=aicoderd test CA",
            *ca_ext,
        ],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=www.youtube.com"],
        ["x509", "-req", "-in", csr, *sign, "-days", "2", "-out", cert],
    ]
    for args in commands:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return ca, context


def source_status(d: DaemonProc, name: str) -> dict[str, Any]:
    (status,) = [s for s in d.status()["sources"] if s["name"] == name]
    return status


def fetch_now(d: DaemonProc, name: str) -> dict[str, Any]:
    """``POST /v1/sources/NAME/fetch`` and wait for the job; the source's status after it."""
    job = d.client.post(f"/v1/sources/{name}/fetch").json()

    def final() -> bool:
        state = d.get(f"/v1/jobs/{job['id']}").json()["state"]
        return state in ("succeeded", "failed", "cancelled", "skipped")

    wait_for(final, timeout=60)
    wait_for(lambda: source_status(d, name)["running_job"] is None, timeout=10)
    return source_status(d, name)


def daemon_state(d: DaemonProc, name: str) -> dict[str, Any]:
    store = Store(d.data_dir / "state.db")
    try:
        return store.sources.state(name)
    finally:
        store.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_through_the_daemon_via_its_proxy(
    make_daemon: Callable[..., DaemonProc], tmp_path: Path
) -> None:
    ca, tls = make_certificates(tmp_path)
    with FakeYouTube(tls) as fake, ConnectProxy(fake.port) as proxy:
        fake.videos["fine0000001"] = Video("Fine", [Track("en", "English", lines=ENGLISH)])
        fake.videos["fromfeed001"] = Video("Fed", [Track("en", "English", lines=ENGLISH)])
        fake.videos["disabled001"] = Video("No captions", captions=False)
        fake.videos["throttled01"] = Video("Busy", throttled=True)
        fake.feed_ids = ["fromfeed001"]
        common = {
            "type": "youtube",
            "schedule": "24h",
            "jitter_seconds": 0,
            "proxy": f"http://127.0.0.1:{proxy.port}",
            "video_interval_seconds": 0,
            "timeout_seconds": 10,
            "blocked_backoff_seconds": 3600,
        }
        talks = {"name": "talks", "videos": ["fine0000001", "disabled001"], "channels": [CHANNEL]}
        busy = {"name": "busy", "videos": ["https://youtu.be/throttled01"]}
        d = make_daemon(sources=[{**common, **talks}, {**common, **busy}])
        trust = {"REQUESTS_CA_BUNDLE": str(ca), "SSL_CERT_FILE": str(ca)}
        no_env_proxy = {v: "" for v in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy")}
        d.start(extra_env={**trust, **no_env_proxy})

        # New sources run soon after the start, as source.fetch jobs.
        def ran(name: str) -> bool:
            status = source_status(d, name)
            return status["last_run"] is not None and status["running_job"] is None

        wait_for(lambda: ran("talks") and ran("busy"), timeout=60)
        status = source_status(d, "talks")
        assert (status["type"], status["outcome"], status["added"], status["failed"]) == (
            "youtube",
            "partial",
            2,
            1,
        )
        assert "watch?v=disabled001: transcripts_disabled: " in status["last_error"]
        docs = stored(d.data_dir)
        assert set(docs) == {"fine0000001", "fromfeed001"}
        assert docs["fromfeed001"][0].startswith("# Fed\n\nhttps://www.youtube.com/watch?v=fromf")
        state = daemon_state(d, "talks")
        assert state["videos"]["disabled001"]["reason"] == "transcripts_disabled"
        assert state["videos"]["disabled001"]["retry_after"] > time.time() + 86400

        busy_status = source_status(d, "busy")
        assert (busy_status["outcome"], busy_status["added"], busy_status["failed"]) == (
            "partial",
            0,
            1,
        )
        assert (
            "blocked: HTTP 429 / IP blocked by YouTube; backing off 1.0 h"
            in (busy_status["last_error"])
        )
        backoff = daemon_state(d, "busy")
        assert backoff["blocks_in_a_row"] == 1
        assert backoff["blocked_until"] == pytest.approx(time.time() + 3600, abs=120)

        # Everything went to www.youtube.com through the proxy, over TLS.
        assert proxy.tunnels and set(proxy.tunnels) == {"www.youtube.com:443"}
        assert {h.split(" ")[1].split("/")[0] for h in fake.hits} == {"www.youtube.com"}
        assert "GET www.youtube.com/watch?v=throttled01" in fake.hits

        # A re-run on unchanged input adds nothing and asks YouTube nothing but the feed; the
        # blocked source asks nothing at all while it backs off.
        before = len(fake.hits)
        again = fetch_now(d, "talks")
        assert (again["outcome"], again["added"], again["updated"], again["unchanged"]) == (
            "succeeded",
            0,
            0,
            2,
        )
        waiting = fetch_now(d, "busy")
        assert (waiting["outcome"], waiting["failed"]) == ("partial", 1)
        assert (
            "throttled01: backoff: YouTube blocked us; asking again after"
            in (waiting["last_error"])
        )
        assert fake.hits[before:] == [f"GET www.youtube.com/feeds/videos.xml?channel_id={CHANNEL}"]
        assert set(stored(d.data_dir)) == {"fine0000001", "fromfeed001"}

        # Blocked again right after the wait: the next backoff is twice as long.
        store = Store(d.data_dir / "state.db")
        store.sources.save_state(
            "busy", {**daemon_state(d, "busy"), "blocked_until": time.time() - 1}
        )
        store.close()
        fetch_now(d, "busy")
        longer = daemon_state(d, "busy")
        assert longer["blocks_in_a_row"] == 2
        assert longer["blocked_until"] == pytest.approx(time.time() + 7200, abs=120)
        assert d.stop() == 0
