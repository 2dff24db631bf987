"""One corpus build: the present documents in, a new snapshot out, incrementally.

Only documents the ledger has not seen are processed. Decisions that depend on earlier
documents (de-duplication) are replayed from the stored fingerprints when the past changed
under them — a kept document retired while duplicates of it were removed, or a document
coming back with an early order — from the first affected document on, so an incremental
build always ends where a full build of the same documents would. Rows of documents kept
before are copied from the previous snapshot, merged in order with the new ones.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from aicoderd.config import CorpusConfig

# Importing the step modules registers them.
from aicoderd.corpus import dedup, markdown_step, normalize, quality, secrets, split  # noqa: F401
from aicoderd.corpus.dataset import Row, RowWriter, count_rows, previous_rows
from aicoderd.corpus.document import Doc, signature
from aicoderd.corpus.inputs import InputDoc, Inputs, Refusal
from aicoderd.corpus.minhash import EMPTY
from aicoderd.corpus.secrets import redact_strings
from aicoderd.corpus.snapshot import (
    CORPUS_TXT,
    DATASET,
    MANIFEST,
    MANIFEST_SCHEMA,
    REMOVED,
    SEPARATOR,
    Layout,
)
from aicoderd.corpus.steps import PIPELINE, STEPS, Pipeline, StepContext
from aicoderd.errors import BuildCancelled, CorpusError
from aicoderd.fsutil import atomic_write, fsync_dir
from aicoderd.store.ledger import Known, Ledger

# Bump when a step decides differently: the next build of every corpus is then a full one.
# 2: the Kingfisher-based secret detector; URIs and sources are redacted too.
PIPELINE_VERSION = 2
# Config keys that change no decision (so changing them keeps the ledger).
_NOT_DECISIONS = {"auto_build", "debounce_seconds", "keep_snapshots", "batch_bytes"}
# A replayed document costs no text processing; it still counts toward a batch.
_REPLAY_WEIGHT = 256

Progress = Callable[..., None]


def decision_config(config: CorpusConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", exclude=_NOT_DECISIONS)


def fingerprint(config: CorpusConfig) -> str:
    data = json.dumps({"pipeline": PIPELINE_VERSION, **decision_config(config)}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


@dataclasses.dataclass
class _Work:
    """A document to decide: ``fresh`` ones have their text processed, the others are replayed
    from their stored fingerprint."""

    item: InputDoc
    order: int
    fresh: bool


class Builder:
    def __init__(
        self,
        inputs: Inputs,
        root: Path,
        config: CorpusConfig,
        *,
        full: bool = False,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.inputs = inputs
        self.layout = Layout(root)
        self.config = config
        self.full = full
        self.progress = progress or (lambda **fields: None)
        self.cancelled = cancelled
        self.timing: dict[str, float] = collections.defaultdict(float)
        self._replay_from: int | None = None

    def run(self) -> dict[str, Any] | None:
        """Build and publish a new snapshot; its manifest, or None when nothing changed."""
        with self.layout.locked():
            ledger = Ledger(self.layout.ledger)
            try:
                return self._run(ledger)
            finally:
                ledger.rollback()
                ledger.close()

    # -- planning ----------------------------------------------------------------------------

    def _run(self, ledger: Ledger) -> dict[str, Any] | None:
        started = time.perf_counter()
        history: list[str] = json.loads(ledger.meta("history") or "[]")
        committed = history[-1] if history else None
        self._recover(committed, history)
        ledger.begin()
        previous = self._previous(ledger, committed)
        known = ledger.known()
        prev_kept = ledger.kept_orders()
        if not known:
            plan: Iterable[_Work] = self._stream_all(ledger)
            retired: set[str] = set()
            mode = "full"
        else:
            listed = self._plan(ledger, known)
            if listed is None:
                return None
            plan, retired = listed
            mode = "incremental"
        tmp = self.layout.snapshots / f".build-{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = RowWriter(tmp)
        try:
            old_rows = _ordered(prev_kept, previous_rows(previous)) if previous else iter(())
            merge = _Merge(writer, old_rows, set(retired))
            counts = self._process(ledger, plan, known, merge)
            merge.finish()
            self.progress(message="writing the dataset", force=True)
            with self._timed("write"):
                writer.finish()
        except BaseException:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        counts.update(retired=len(retired), reused=merge.reused)
        return self._commit(ledger, tmp, writer, history, mode, counts, started)

    def _recover(self, committed: str | None, history: list[str]) -> None:
        """Finish what a crash interrupted: publish a committed snapshot the crash left
        unpublished, remove unfinished ones."""
        if (
            committed is not None
            and self.layout.current_id() != committed
            and self.layout.snapshot_dir(committed).is_dir()
        ):
            self.layout.publish(committed)
        self.layout.clean(keep=history[-self.config.keep_snapshots :])

    def _previous(self, ledger: Ledger, committed: str | None) -> Path | None:
        """The snapshot to reuse rows from; None (and a forgotten ledger) for a full build."""
        directory = None if committed is None else self.layout.snapshot_dir(committed)
        usable = (
            not self.full
            and directory is not None
            and ledger.meta("fingerprint") == fingerprint(self.config)
            and count_rows(directory) == len(ledger.kept_orders())
        )
        if not usable:
            ledger.reset()
            ledger.set_meta("fingerprint", fingerprint(self.config))
            return None
        return directory

    def _stream_all(self, ledger: Ledger) -> Iterator[_Work]:
        """Every document is new: decide them in one pass as the inputs yield them."""
        next_order = ledger.max_order() + 1
        for item in self.inputs.documents():
            order = item.order if item.order is not None else next_order
            next_order = max(next_order, order) + 1
            yield _Work(item, order, fresh=True)

    def _plan(self, ledger: Ledger, known: dict[str, Known]) -> tuple[list[_Work], set[str]] | None:
        with self._timed("read"):
            present = [dataclasses.replace(d, text=None) for d in self.inputs.documents()]
        ids = {d.doc_id for d in present}
        retired = set(known) - ids
        next_order = ledger.max_order() + 1
        newest_known = max(k.order for k in known.values())
        work: list[_Work] = []
        for item in present:
            if item.doc_id in known:
                continue
            order = item.order if item.order is not None else next_order
            next_order = max(next_order, order) + 1
            work.append(_Work(item, order, fresh=True))
        affected = [o for o, d in ledger.dependents_of(retired) if d not in retired]
        affected += [w.order for w in work if w.order <= newest_known]  # came back
        refused = _refusals_key(self.inputs.refusals())
        if not work and not retired and not affected and refused == ledger.meta("refused"):
            return None
        ledger.delete(retired)
        if affected:
            since = min(affected)
            for item in present:
                k = known.get(item.doc_id)
                if k is not None and k.order >= since and (k.kept or k.deduped):
                    work.append(_Work(item, k.order, fresh=not k.kept))
            self._replay_from = since
        work.sort(key=lambda w: w.order)
        return work, retired

    # -- processing --------------------------------------------------------------------------

    def _process(
        self, ledger: Ledger, plan: Iterable[_Work], known: dict[str, Known], merge: _Merge
    ) -> Counter[str]:
        def lookup(order: int) -> tuple[str, Any]:
            doc_id, blob = ledger.fingerprint(order)
            return doc_id, signature(blob)

        context = StepContext(lookup=lookup)
        steps = [STEPS[name](self.config, context) for name in PIPELINE]
        self.pipeline = Pipeline(steps)
        deduper = next(s for s in steps if isinstance(s, dedup.Dedup))
        for orders, exact, blobs in ledger.kept_fingerprints(before=self._replay_from):
            deduper.preload(orders, exact, _signatures(blobs, self.config.minhash_permutations))
        counts: Counter[str] = Counter()
        for batch in self._batches(plan):
            if self.cancelled():
                raise BuildCancelled("the corpus build was cancelled")
            docs = self._redacted_provenance([self._doc(w, ledger) for w in batch])
            self.pipeline.run(docs)
            ledger.record([d.ledger_row() for d in docs])
            for doc, w in zip(docs, batch, strict=True):
                was_kept = w.item.doc_id in known and known[w.item.doc_id].kept
                counts["processed" if w.fresh else "replayed"] += 1
                if doc.live and doc.text is not None:
                    merge.emit(doc.order, _row(doc))
                elif not doc.live and was_kept:
                    merge.dropped.add(doc.doc_id)
            self.progress(step=sum(counts.values()), message="processing documents")
        return counts

    def _batches(self, plan: Iterable[_Work]) -> Iterator[list[_Work]]:
        batch: list[_Work] = []
        size = 0
        limit = int(self.config.batch_bytes)
        started = time.perf_counter()
        for w in plan:
            batch.append(w)
            size += len(w.item.text) if w.item.text is not None else _REPLAY_WEIGHT
            if size >= limit:
                self.timing["read"] += time.perf_counter() - started
                yield batch
                batch, size = [], 0
                started = time.perf_counter()
        self.timing["read"] += time.perf_counter() - started
        if batch:
            yield batch

    def _doc(self, w: _Work, ledger: Ledger) -> Doc:
        item = w.item
        doc = Doc(item.doc_id, w.order, item.source, item.uri, item.kind, item.language, None)
        if w.fresh:
            with self._timed("read"):
                doc.text = item.text if item.text is not None else item.load()
        else:
            doc.exact, blob = ledger.stored_fingerprint(item.doc_id)
            doc.signature = signature(blob)
        return doc

    def _redacted_provenance(self, docs: list[Doc]) -> list[Doc]:
        """Secrets in URIs and sources (a token in a file name) replaced before anything
        records them: the ledger, the dataset, removed.jsonl."""
        n = len(docs)
        clean = self._redact([d.uri for d in docs] + [d.source for d in docs])
        for doc, uri, source in zip(docs, clean[:n], clean[n:], strict=True):
            doc.uri, doc.source = uri, source
        return docs

    def _redact(self, values: list[str]) -> list[str]:
        if not self.config.redact_secrets:
            return values
        return redact_strings(values, self.config.secret_placeholder)

    def _redacted_refusals(self, refusals: list[Refusal]) -> list[Refusal]:
        clean = iter(self._redact([f for r in refusals for f in (r.source, r.uri, r.detail)]))
        return [
            dataclasses.replace(r, source=next(clean), uri=next(clean), detail=next(clean))
            for r in refusals
        ]

    def _described_inputs(self) -> dict[str, object]:
        """The inputs' description, its paths redacted like the URIs under them."""
        described = self.inputs.describe()
        paths = described.get("paths")
        if isinstance(paths, list):
            described["paths"] = self._redact([str(p) for p in paths])
        return described

    # -- publishing --------------------------------------------------------------------------

    def _commit(
        self,
        ledger: Ledger,
        tmp: Path,
        writer: RowWriter,
        history: list[str],
        mode: str,
        counts: Counter[str],
        started: float,
    ) -> dict[str, Any]:
        totals = ledger.totals()
        documents = sum(t["documents"] for t in totals.values())
        if documents != writer.documents:
            raise CorpusError(
                f"the snapshot has {writer.documents} documents, the ledger {documents}"
            )
        snapshot = f"{len(history) + 1:05d}-{writer.digest.hexdigest()[:12]}"
        refusals = self.inputs.refusals()
        with self._timed("write"):
            _write_removed(tmp / REMOVED, ledger, self._redacted_refusals(refusals))
        manifest = self._manifest(snapshot, writer, ledger, refusals, mode, counts, started)
        atomic_write(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        final = self.layout.snapshot_dir(snapshot)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        fsync_dir(self.layout.snapshots)
        history = [*history, snapshot]
        ledger.set_meta("history", json.dumps(history[-100:]))
        ledger.set_meta("refused", _refusals_key(refusals))
        ledger.commit()
        self.layout.publish(snapshot)
        self.layout.clean(keep=history[-self.config.keep_snapshots :])
        return manifest

    def _manifest(
        self,
        snapshot: str,
        writer: RowWriter,
        ledger: Ledger,
        refusals: list[Refusal],
        mode: str,
        counts: Counter[str],
        started: float,
    ) -> dict[str, Any]:
        totals = ledger.totals()
        size = sum(t["bytes"] for t in totals.values())
        removed = ledger.removed_counts() + Counter(r.reason for r in refusals)
        return {
            "schema": MANIFEST_SCHEMA,
            "snapshot": snapshot,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "content_digest": writer.digest.hexdigest(),
            "documents": writer.documents,
            "bytes": size,
            # byte-level BPE averages about four bytes per token on English and code
            "tokens_estimate": math.ceil(size / 4),
            "splits": dict(sorted(totals.items())),
            "removed": dict(sorted(removed.items())),
            "redactions": dict(sorted(ledger.redaction_counts().items())),
            "separator": SEPARATOR,
            "files": {"corpus": CORPUS_TXT, "dataset": DATASET, "removed": REMOVED},
            "inputs": self._described_inputs(),
            "build": {
                "mode": mode,
                **dict(sorted(counts.items())),
                "seconds": round(time.perf_counter() - started, 3),
                **{f"{k}_seconds": round(v, 3) for k, v in sorted(self.timing.items())},
            },
            "steps": self.pipeline.report() if hasattr(self, "pipeline") else {},
            "config": decision_config(self.config),
        }

    def _timed(self, key: str) -> _Timer:
        return _Timer(self.timing, key)


class _Timer:
    def __init__(self, into: dict[str, float], key: str) -> None:
        self.into, self.key = into, key

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[self.key] += time.perf_counter() - self.started


class _Merge:
    """Writes rows in order: the previous snapshot's (less the dropped ones) and the new."""

    def __init__(self, writer: RowWriter, old: Iterator[tuple[int, Row]], dropped: set[str]):
        self.writer = writer
        self.old = old
        self.dropped = dropped
        self.reused = 0
        self._next = next(self.old, None)

    def emit(self, order: int, row: Row) -> None:
        self._flush(before=order)
        self.writer.add(row)

    def finish(self) -> None:
        self._flush(before=None)

    def _flush(self, before: int | None) -> None:
        while self._next is not None and (before is None or self._next[0] < before):
            if self._next[1].doc_id not in self.dropped:
                self.writer.add(self._next[1])
                self.reused += 1
            self._next = next(self.old, None)


def _ordered(kept: list[tuple[int, str]], rows: Iterator[Row]) -> Iterator[tuple[int, Row]]:
    """The previous snapshot's rows with their orders (the ledger lists them in row order)."""
    for (order, doc_id), row in zip(kept, rows, strict=True):
        if row.doc_id != doc_id:
            raise CorpusError(f"previous snapshot row {row.doc_id} where the ledger has {doc_id}")
        yield order, row


def _row(doc: Doc) -> Row:
    assert doc.text is not None
    return Row(doc.text, doc.doc_id, doc.source, doc.uri, doc.kind, doc.language, doc.split)


def _signatures(blobs: list[bytes | None], width: int) -> np.ndarray:
    empty = np.full(width, EMPTY, dtype=np.uint32)
    return (
        np.stack(
            [empty if b is None else np.frombuffer(b, dtype="<u4").astype(np.uint32) for b in blobs]
        )
        if blobs
        else np.empty((0, width), np.uint32)
    )


def _refusals_key(refusals: list[Refusal]) -> str:
    """Identifies the set of refused inputs (a change alone makes a new snapshot)."""
    data = json.dumps(sorted((r.uri, r.reason) for r in refusals))
    return hashlib.sha256(data.encode()).hexdigest()


def _write_removed(path: Path, ledger: Ledger, refusals: list[Refusal]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for entry in ledger.removed():
            fh.write(json.dumps(entry) + "\n")
        for r in refusals:
            entry = {"doc_id": None, "source": r.source, "uri": r.uri, "kind": None,
                     "reason": r.reason, "detail": r.detail, "dup_of": None}  # fmt: skip
            fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
