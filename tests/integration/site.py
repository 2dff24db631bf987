"""A web site on loopback for the crawler and feed tests: a real threaded HTTP server
(pytest-httpserver, werkzeug) with pages that honour ETag / Last-Modified, custom handlers for
the awkward cases, and a log of every request it answered."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from aicoderd.config import Settings
from aicoderd.jobctx import JobContext
from aicoderd.sources import fetch_job as job
from aicoderd.sources.base import FETCHERS, FetchedDocument, SourceRun
from aicoderd.store import DocumentFiles, Store

LAST_MODIFIED = "Sat, 02 Mar 2024 10:00:00 GMT"
Handler = Callable[[Request], Response]


@dataclass
class Hit:
    path: str  # with the query string, if any
    status: int
    at: float
    headers: dict[str, str] = field(default_factory=dict)


class Site:
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.handlers: dict[str, Handler] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/.*")).respond_with_handler(self._handle)

    @classmethod
    @contextmanager
    def serve(cls) -> Iterator[Site]:
        server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        server.start()
        try:
            yield cls(server)
        finally:
            server.clear()
            server.stop()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    # -- content -----------------------------------------------------------------------------

    def page(
        self,
        path: str,
        body: str | bytes,
        content_type: str = "text/html; charset=utf-8",
        *,
        etag: bool = True,
        last_modified: bool = True,
    ) -> None:
        """A resource answered with 200, or 304 when the client's validators match."""
        data = body.encode() if isinstance(body, str) else body
        tag = f'"{hashlib.sha1(data).hexdigest()[:16]}"' if etag else None

        def handle(request: Request) -> Response:
            headers = {}
            if tag:
                headers["ETag"] = tag
            if last_modified:
                headers["Last-Modified"] = LAST_MODIFIED
            if (tag and request.headers.get("If-None-Match") == tag) or (
                last_modified
                and not tag
                and request.headers.get("If-Modified-Since") == LAST_MODIFIED
            ):
                return Response(status=304, headers=headers)
            return Response(data, content_type=content_type, headers=headers)

        self.handlers[path] = handle

    def handler(self, path: str, handle: Handler) -> None:
        self.handlers[path] = handle

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        self.handlers[path] = lambda request: Response(status=status, headers={"Location": to})

    def remove(self, path: str) -> None:
        self.handlers.pop(path, None)

    # -- what happened -----------------------------------------------------------------------

    def paths(self) -> list[str]:
        with self._lock:
            return [h.path for h in self.hits]

    def hits_of(self, path: str) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.path == path]

    def statuses(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        with self._lock:
            for h in self.hits:
                out.setdefault(h.path, []).append(h.status)
        return out

    def forget(self) -> None:
        with self._lock:
            self.hits.clear()

    def _handle(self, request: Request) -> Response:
        path = request.full_path.rstrip("?")
        handle = self.handlers.get(path) or self.handlers.get(request.path)
        response = handle(request) if handle else Response("not found", status=404)
        with self._lock:
            self.hits.append(
                Hit(path, response.status_code, time.monotonic(), dict(request.headers))
            )
        return response


def docs_page(title: str, body: str, links: list[str] | None = None, head: str = "") -> str:
    """A small Sphinx-shaped page: navigation outside the main container."""
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links or [])
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head><body>"
        f'<div class="related" role="navigation"><ul>{nav}</ul></div>'
        f'<div class="document"><div class="body" role="main"><section>'
        f"<h1>{title}</h1>{body}</section></div></div>"
        f'<div class="footer">Powered by Sphinx</div></body></html>'
    )


def run_source(data_dir: Path, source: dict[str, Any]) -> dict[str, Any]:
    """One run of ``source``, in this process, exactly as the ``source.fetch`` job runs it."""
    settings = Settings(
        data_dir=data_dir, socket=data_dir / "api.sock", folders=[], sources=[source]
    )
    ctx = JobContext(1, settings, io.StringIO())
    return job.run({"source": source["name"], "force": True}, ctx)


class Died(BaseException):
    """Stands for the job's process dying (SIGKILL, power loss): nothing after it runs."""


class DyingRun(SourceRun):
    """The job's SourceRun, whose process dies when the fetcher hands it one document too many:
    no flush, no ``finish``, no state saved beyond what the batches committed."""

    lives = 0

    def put(self, doc: FetchedDocument) -> str:
        if self.lives <= 0:
            raise Died(doc.uri)
        self.lives -= 1
        return super().put(doc)


def run_dying(
    data_dir: Path, source: dict[str, Any], *, puts: int, batch_documents: int
) -> DyingRun:
    """A run of ``source`` in this process, committing every ``batch_documents`` puts, that
    dies at the put after the first ``puts``."""
    settings = Settings(
        data_dir=data_dir, socket=data_dir / "api.sock", folders=[], sources=[source]
    )
    store = Store(settings.state_db)
    run = DyingRun(
        config=settings.sources[0],
        settings=settings,
        store=store,
        files=DocumentFiles(settings.documents_dir),
        state=store.sources.state(source["name"]),
        batch_documents=batch_documents,
        batch_seconds=3600,
    )
    run.lives = puts
    module, _, func = FETCHERS[source["type"]].partition(":")
    try:
        getattr(__import__(module, fromlist=[func]), func)(run)
    except Died:
        pass
    else:
        raise AssertionError(f"the run ended before {puts + 1} documents")
    finally:
        run.close()
        store.close()
    return run


def source_state(data_dir: Path, name: str) -> dict[str, Any]:
    store = Store(data_dir / "state.db")
    try:
        return store.sources.state(name)
    finally:
        store.close()


def stored(data_dir: Path, source_key: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """uri → (text, meta) of the documents a source holds now."""
    store = Store(data_dir / "state.db")
    files = DocumentFiles(data_dir / "documents")
    with store.db.read() as db:
        rows = db.execute(
            "SELECT l.uri, l.meta, d.sha256 FROM locations l JOIN documents d"
            " ON d.id = l.document_id WHERE l.source=? AND l.present=1",
            (source_key,),
        ).fetchall()
    store.close()
    return {r["uri"]: (files.read(r["sha256"]), json.loads(r["meta"] or "{}")) for r in rows}


def document_statuses(data_dir: Path) -> dict[str, int]:
    store = Store(data_dir / "state.db")
    with store.db.read() as db:
        rows = db.execute("SELECT status, COUNT(*) n FROM documents GROUP BY status").fetchall()
    store.close()
    return {r["status"]: r["n"] for r in rows}
