"""The contract between network sources (web, feed, git, youtube) and the document store.

A fetcher is ``fetch(run: SourceRun) -> None``, registered in :data:`FETCHERS` by source type
and imported only in the ``source.fetch`` job's child process. It hands each document to
``run.put``, marks what it saw unchanged (an HTTP 304, a file not touched by a commit) with
``run.keep``, records per-item failures with ``run.fail``, and keeps what it needs between
runs (ETags, the last commit, seen feed entries) in ``run.state``, a JSON-able dict saved when
the run ends. Whatever was present after the previous run and was neither put nor kept this
time is retired by ``run.finish`` — unless the fetcher says the run was partial
(``run.complete = False``, e.g. a crawl cut at ``max_pages`` or a failed listing).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd import __version__
from aicoderd.config import FeedSource, GitSource, Settings, WebSource, YoutubeSource
from aicoderd.store import DocumentFiles, NewDocument, Store

if TYPE_CHECKING:  # fetchers use httpx in the job's process; the daemon reads run records only
    import httpx

USER_AGENT = f"aicoderd/{__version__}"

# source type → "module:function" of its fetcher
FETCHERS: dict[str, str] = {
    "web": "aicoderd.sources.web:fetch",
    "feed": "aicoderd.sources.feeds:fetch",
    "git": "aicoderd.sources.git:fetch",
    "youtube": "aicoderd.sources.youtube:fetch",
}

AnySource = WebSource | FeedSource | GitSource | YoutubeSource


def source_key(config: AnySource) -> str:
    """The ``documents.source`` / ``locations.source`` value of a configured source."""
    return f"{config.type}:{config.name}"


@dataclass(frozen=True)
class FetchedDocument:
    uri: str  # canonical URL, or "<repo url>@<path>" for git, or the video URL
    text: str
    kind: str  # "markdown" | "code" | "text" | "rst" | "html" | "transcript" …
    language: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: title, commit, licence…


@dataclass
class SourceRun:
    """One run of one source: what a fetcher gets, and what it reports through."""

    config: AnySource
    settings: Settings
    store: Store
    files: DocumentFiles
    state: dict[str, Any]
    progress: Callable[..., None] = lambda **fields: None
    is_cancelled: Callable[[], bool] = lambda: False
    complete: bool = True
    counts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def key(self) -> str:
        return source_key(self.config)

    @property
    def cache_dir(self) -> Path:
        """A persistent folder of this source's own (a git clone lives here)."""
        path = self.settings.sources_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def cancelled(self) -> bool:
        return self.is_cancelled()

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client with our user agent, bounded redirects and timeouts."""
        import httpx

        kwargs.setdefault("timeout", httpx.Timeout(30.0))
        kwargs.setdefault("follow_redirects", True)
        kwargs.setdefault("max_redirects", 5)
        headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
        return httpx.Client(headers=headers, **kwargs)

    def put(self, doc: FetchedDocument) -> str:
        """Store one document; returns "added", "updated" or "unchanged"."""
        self._seen.add(doc.uri)
        sha, data = self.files.digest(doc.text)
        previous = self.store.location(self.key, doc.uri)
        self.files.put(sha, data)
        self.store.record_documents(
            [
                NewDocument(
                    source=self.key,
                    uri=doc.uri,
                    kind=doc.kind,
                    language=doc.language,
                    size=len(data),
                    sha256=sha,
                    status="stored",
                    meta=doc.meta or None,
                    retire_replaced=True,
                )
            ]
        )
        if previous is None or previous["present"] == 0:
            outcome = "added"
        elif previous["document_id"] is not None and self._sha_of(previous["document_id"]) == sha:
            outcome = "unchanged"
        else:
            outcome = "updated"
        self.counts[outcome] += 1
        return outcome

    def keep(self, uri: str) -> None:
        """``uri`` is still there and unchanged (e.g. a 304): not retired, counted unchanged."""
        self._seen.add(uri)
        self.counts["unchanged"] += 1

    def fail(self, uri: str, reason: str, message: str) -> None:
        """One item could not be fetched; the run goes on. A failed item is not retired."""
        self._seen.add(uri)
        self.counts["failed"] += 1
        self.errors.append(f"{uri}: {reason}: {message}")

    def retire(self, uris: Iterable[str]) -> None:
        uris = list(uris)
        if uris:
            self.counts["retired"] += self.store.retire_locations(self.key, uris)

    def finish(self) -> None:
        """Retire what the previous run had and this one did not see (complete runs only)."""
        if self.complete and not self.cancelled:
            present = self.store.file_locations(self.key)
            self.retire(uri for uri in present if uri not in self._seen)

    def _sha_of(self, document_id: int) -> str | None:
        with self.store.read() as db:
            row = db.execute("SELECT sha256 FROM documents WHERE id=?", (document_id,)).fetchone()
        return None if row is None else str(row["sha256"])


def load_state(store: Store, name: str) -> dict[str, Any]:
    with store.read() as db:
        row = db.execute("SELECT state FROM source_state WHERE name=?", (name,)).fetchone()
    return {} if row is None else dict(json.loads(row["state"]))


def save_state(store: Store, name: str, state: dict[str, Any]) -> None:
    with store.write() as db:
        db.execute(
            "INSERT INTO source_state (name, state) VALUES (?, ?) ON CONFLICT(name)"
            " DO UPDATE SET state=excluded.state",
            (name, json.dumps(state)),
        )


def record_run(
    store: Store,
    name: str,
    job_id: int | None,
    started: float,
    outcome: str,
    counts: Counter[str],
    error: str | None,
) -> None:
    with store.write() as db:
        db.execute(
            "INSERT INTO source_runs (name, job_id, started, finished, outcome, added, updated,"
            " unchanged, retired, failed, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                name,
                job_id,
                started,
                time.time(),
                outcome,
                counts["added"],
                counts["updated"],
                counts["unchanged"],
                counts["retired"],
                counts["failed"],
                error,
            ),
        )


def last_runs(store: Store) -> dict[str, dict[str, Any]]:
    """The newest run of every source that ever ran."""
    with store.read() as db:
        rows = db.execute(
            "SELECT * FROM source_runs WHERE id IN (SELECT MAX(id) FROM source_runs GROUP BY name)"
        ).fetchall()
    return {r["name"]: dict(r) for r in rows}
