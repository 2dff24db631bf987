"""Where a build's documents come from: the daemon's document store, or files and folders.

Both give the same thing — every present document, in processing order, with its id (the
sha256 of its stored text), provenance and a way to load its text — so the standalone command
and the daemon job run one build. Files go through the daemon's own extraction
(:func:`aicoderd.sources.extract.extract`) and junk-name rule, so a folder built standalone
gives the corpus the daemon would give after ingesting it.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aicoderd.errors import IngestRefused
from aicoderd.sources.extract import Extracted, extract, read_file
from aicoderd.sources.extract_limits import ExtractLimits
from aicoderd.sources.folders import walk
from aicoderd.sources.kinds import is_junk
from aicoderd.store import DocumentFiles
from aicoderd.store.documents import Documents


@dataclass(frozen=True)
class InputDoc:
    doc_id: str
    order: int | None  # fixed by the source (the store's document id), else given by the ledger
    source: str
    uri: str
    kind: str
    language: str | None
    load: Callable[[], str]
    text: str | None = None  # already in hand (the build uses it rather than load it again)


@dataclass(frozen=True)
class Refusal:
    """An input that never became a document, listed beside the removed ones."""

    source: str
    uri: str
    reason: str
    detail: str


class Inputs(Protocol):
    mode: str

    def documents(self) -> Iterator[InputDoc]:
        """Every present document, in processing order."""
        ...

    def refusals(self) -> list[Refusal]:
        """Inputs refused (complete once :meth:`documents` has been consumed)."""
        ...

    def describe(self) -> dict[str, object]: ...


class StoreInputs:
    """The daemon's stored documents, in the order they were first stored."""

    mode = "store"

    def __init__(self, documents: Documents, files: DocumentFiles) -> None:
        self.documents_table = documents
        self.files = files
        self._refused: list[Refusal] = []
        self._counts: dict[str, int] = {}

    def documents(self) -> Iterator[InputDoc]:
        rows = self.documents_table.stored()
        failed = self.documents_table.failed()
        self._counts = {"documents": len(rows), "max_id": rows[-1]["id"] if rows else 0}
        self._refused = [
            Refusal(r["source"], r["uri"], *_split_reason(r["failure_reason"] or "unknown"))
            for r in failed
        ]
        for r in rows:
            sha = str(r["sha256"])
            yield InputDoc(
                sha,
                int(r["id"]),
                r["source"],
                r["uri"],
                r["kind"],
                r["language"],
                lambda sha=sha: self.files.read(sha),  # type: ignore[misc]
            )

    def refusals(self) -> list[Refusal]:
        return self._refused

    def describe(self) -> dict[str, object]:
        return {"mode": self.mode, **self._counts}


def _split_reason(failure: str) -> tuple[str, str]:
    code, _, message = failure.partition(": ")
    return f"ingest.{code}", message


@dataclass
class FileInputs:
    """Files and folders (recursively, junk names skipped, symlinks never followed), each input
    in the order given and inside it by path; the same content twice is one document."""

    paths: list[Path]
    limits: ExtractLimits
    mode: str = "files"
    counts: Counter[str] = field(default_factory=Counter)
    _refused: list[Refusal] = field(default_factory=list)

    def documents(self) -> Iterator[InputDoc]:
        self.counts.clear()
        self._refused.clear()
        seen: set[str] = set()
        for root in self.paths:
            root = root.expanduser().absolute()
            source = f"input:{root}"
            for path in self._files(root):
                self.counts["files"] += 1
                for item in self._extract(source, path):
                    doc = self._document(source, path, item)
                    if doc.doc_id in seen:
                        self.counts["same_content"] += 1
                        continue
                    seen.add(doc.doc_id)
                    self.counts["documents"] += 1
                    yield doc

    def refusals(self) -> list[Refusal]:
        return list(self._refused)

    def describe(self) -> dict[str, object]:
        return {"mode": self.mode, "paths": [str(p) for p in self.paths], **self.counts}

    def _files(self, root: Path) -> list[Path]:
        if root.is_dir() and not root.is_symlink():
            return sorted(c.path for c in walk(root, recursive=True))
        if is_junk(root.name):
            return []
        return [root]

    def _extract(self, source: str, path: Path) -> list[Extracted]:
        try:
            return extract(_read(path, self.limits), str(path), self.limits)
        except IngestRefused as exc:
            self._refused.append(Refusal(source, str(path), f"ingest.{exc.reason}", str(exc)))
        except OSError as exc:
            detail = f"cannot read the file: {exc.strerror or exc}"
            self._refused.append(Refusal(source, str(path), "ingest.unreadable", detail))
        return []

    def _document(self, source: str, path: Path, item: Extracted) -> InputDoc:
        doc_id = hashlib.sha256(item.text.encode("utf-8")).hexdigest()
        return InputDoc(
            doc_id,
            None,
            source,
            item.name,
            item.kind,
            item.language,
            _loader(path, item.name, self.limits),
            item.text,
        )


def _loader(path: Path, name: str, limits: ExtractLimits) -> Callable[[], str]:
    """Loads the text again from the file, for builds that list every document first."""

    def load() -> str:
        for item in extract(_read(path, limits), str(path), limits):
            if item.name == name:
                return item.text
        raise FileNotFoundError(f"{name} is no longer in {path}")

    return load


def _read(path: Path, limits: ExtractLimits) -> bytes:
    """A regular file's bytes; links and special files are refused as ingestion refuses them."""
    return read_file(path, os.lstat(path), limits)
