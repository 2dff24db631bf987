"""The rows of a snapshot: written once as ``preprocessed_corpus.txt`` and as an HF
``datasets`` dataset together, and read back from the previous snapshot. The only corpus
module that imports pyarrow and ``datasets``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import datasets
import pyarrow as pa

from aicoderd.corpus.snapshot import CORPUS_TXT, DATASET, SEPARATOR

datasets.disable_progress_bars()


class Row(NamedTuple):
    text: str
    doc_id: str
    source: str
    uri: str
    kind: str
    language: str | None
    split: str


COLUMNS = Row._fields
FEATURES = datasets.Features({name: datasets.Value("string") for name in COLUMNS})
_FLUSH_BYTES = 4 * 2**20  # text per Arrow record batch


class RowWriter:
    """Appends rows, in order, to the text file and to an Arrow stream that becomes the
    dataset in :meth:`finish`. ``digest`` identifies the content (ids and splits, in order)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._txt = open(directory / CORPUS_TXT, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._arrow_path = directory / ".rows.arrow"
        self._arrow = pa.ipc.new_stream(str(self._arrow_path), FEATURES.arrow_schema)
        self._pending: list[Row] = []
        self._pending_bytes = 0
        self.documents = 0
        self.digest = hashlib.sha256()

    def add(self, row: Row) -> None:
        if self.documents:
            self._txt.write(SEPARATOR)
        self._txt.write(row.text)
        self.documents += 1
        self.digest.update(f"{row.doc_id}:{row.split}\n".encode())
        self._pending.append(row)
        self._pending_bytes += len(row.text)
        if self._pending_bytes >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            columns = list(zip(*self._pending, strict=True))
            arrays = [pa.array(col, type=pa.string()) for col in columns]
            self._arrow.write_batch(pa.record_batch(arrays, schema=FEATURES.arrow_schema))
        self._pending, self._pending_bytes = [], 0

    def finish(self) -> None:
        """Close both, turn the Arrow stream into the saved dataset, and fsync everything."""
        self._flush()
        self._arrow.close()
        self._txt.close()
        rows = datasets.Dataset.from_file(str(self._arrow_path))
        rows.save_to_disk(str(self.directory / DATASET))
        del rows
        os.unlink(self._arrow_path)
        _fsync_tree(self.directory)

    def abort(self) -> None:
        self._txt.close()
        self._arrow.close()


def previous_rows(directory: Path) -> Iterator[Row]:
    """The rows of an earlier snapshot, in order."""
    saved = datasets.load_from_disk(str(directory / DATASET))
    assert isinstance(saved, datasets.Dataset)
    for batch in saved.iter(batch_size=512):
        yield from (Row(*values) for values in zip(*(batch[c] for c in COLUMNS), strict=True))


def count_rows(directory: Path) -> int | None:
    """Rows in a snapshot's dataset; None when it cannot be read."""
    try:
        saved = datasets.load_from_disk(str(directory / DATASET))
    except (OSError, ValueError):
        return None
    return len(saved) if isinstance(saved, datasets.Dataset) else None


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
