"""The contract between network sources (web, feed, git, youtube) and the document store.

A fetcher is ``fetch(run: SourceRun) -> None``, registered in :data:`FETCHERS` by source type
and imported only in the ``source.fetch`` job's child process. It hands each document to
``run.put``, marks what it saw unchanged (an HTTP 304, a file not touched by a commit) with
``run.keep``, records per-item failures with ``run.fail``, and keeps what it needs between
runs (ETags, the last commit, seen feed entries) in ``run.state``, a JSON-able dict saved when
the run ends. Whatever was present after the previous run and was neither put nor kept this
time is retired by ``run.finish`` — unless the fetcher says the run was partial
(``run.complete = False``, e.g. a crawl cut at ``max_pages`` or a failed listing).

Puts are stored in batches (:data:`BATCH_DOCUMENTS` documents or :data:`BATCH_SECONDS`, and at
the end of the run), as folder ingestion does: each text file is written and fsynced when put,
its folder is fsynced once per batch, and one SQLite transaction records the batch's documents
*and* the run's state as it is at that moment. So the state saved never runs ahead of the
documents: an ETag is committed with the document its page became, and a crash between batches
leaves the previous batches whole (counted, listed) and the current one not recorded at all
(its files are unreferenced content, re-used by content address next time). A fetcher must
therefore change ``run.state`` for a document *before* (or with) its ``put`` only in ways that
the document makes true, and keep anything that declares the run done (the git source's last
commit) for the end of the run: ``finish`` commits the last batch and retires, and only then
is the final state saved.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd import __version__
from aicoderd.config import FeedSource, GitSource, Settings, WebSource, YoutubeSource
from aicoderd.store import DocumentFiles, NewDocument, Store
from aicoderd.store.writer import DocumentWriter

if TYPE_CHECKING:  # fetchers use httpx in the job's process; the daemon reads run records only
    import httpx

USER_AGENT = f"aicoderd/{__version__}"

# A batch of puts is committed when it holds this many documents or is this old (checked at
# each put, keep and fail), and at the end of the run.
BATCH_DOCUMENTS = 256
BATCH_SECONDS = 2.0
WRITER_THREADS = 4  # text files written and fsynced beside the fetcher (the waits overlap)

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
    batch_documents: int = BATCH_DOCUMENTS
    batch_seconds: float = BATCH_SECONDS
    _seen: set[str] = field(default_factory=set)
    # The batch not yet committed: uri → (document, outcome it will be counted as).
    _pending: dict[str, tuple[NewDocument, str]] = field(default_factory=dict)
    _writes: list[Future[bool]] = field(default_factory=list)  # content files being written
    _batch_started: float | None = None
    _pool: ThreadPoolExecutor | None = None
    _documents: DocumentWriter | None = None

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
    def writer(self) -> DocumentWriter:
        """The store's document writer (files, then one transaction per batch)."""
        if self._documents is None:
            self._documents = DocumentWriter(self.store, self.files)
        return self._documents

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
        """Store one document with the current batch; returns the outcome it is counted as
        when the batch commits: "added", "updated" or "unchanged"."""
        self._seen.add(doc.uri)
        sha, data = self.files.digest(doc.text)
        outcome = self._outcome(doc.uri, sha)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="put")
        self._writes.append(self._pool.submit(self.writer.write, sha, data))
        self._pending[doc.uri] = (
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
            ),
            outcome,
        )
        if self._batch_started is None:
            self._batch_started = time.monotonic()
        self._maybe_flush()
        return outcome

    def keep(self, uri: str) -> None:
        """``uri`` is still there and unchanged (e.g. a 304): not retired, counted unchanged."""
        self._seen.add(uri)
        self.counts["unchanged"] += 1
        self._maybe_flush()

    def fail(self, uri: str, reason: str, message: str) -> None:
        """One item could not be fetched; the run goes on. A failed item is not retired."""
        self._seen.add(uri)
        self.counts["failed"] += 1
        self.errors.append(f"{uri}: {reason}: {message}")
        self._maybe_flush()

    def is_stored(self, uri: str) -> bool:
        """``uri`` has a present document: from an earlier run, or put in this one."""
        if uri in self._pending:
            return True
        row = self.store.documents.location(self.key, uri)
        return row is not None and bool(row["present"])

    def retire(self, uris: Iterable[str]) -> None:
        uris = list(uris)
        if uris:
            self.counts["retired"] += self.store.documents.retire_locations(self.key, uris)

    def flush(self, *, with_state: bool = True) -> None:
        """Commit the pending puts: their content folders fsynced, then one transaction with
        the documents and (``with_state``) the run's state. Counts move only once committed."""
        if not self._pending and not with_state:
            return
        for written in self._writes:
            written.result()  # every file durable before the rows that name it
        pending = list(self._pending.values())
        with self.writer.committing(self._pool) as tx:
            tx.documents.record([doc for doc, _ in pending])
            if with_state:
                tx.sources.save_state(self.name, self.state)
        self._pending.clear()
        self._writes.clear()
        self._batch_started = None
        self.counts.update(outcome for _, outcome in pending)

    def finish(self) -> None:
        """Commit the last batch; retire what the previous run had and this one did not see
        (complete runs only); then save the final state, so that what declares the run done
        (a git source's last commit) is recorded only after everything it implies."""
        self.flush(with_state=False)
        if self.complete and not self.cancelled:
            present = self.store.documents.file_locations(self.key)
            self.retire(uri for uri in present if uri not in self._seen)
        self.flush()
        self.close()

    def close(self) -> None:
        """Stop the file writer threads (a later put starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _maybe_flush(self) -> None:
        if self._batch_started is None:
            return
        if (
            len(self._pending) >= self.batch_documents
            or time.monotonic() - self._batch_started >= self.batch_seconds
        ):
            self.flush()

    def _outcome(self, uri: str, sha: str) -> str:
        """What a put of ``sha`` at ``uri`` does to the committed store."""
        row = self.store.documents.placed(self.key, uri)
        if row is None or not row.present:
            return "added"
        if row.document_id is not None and row.sha256 == sha:
            return "unchanged"
        return "updated"
