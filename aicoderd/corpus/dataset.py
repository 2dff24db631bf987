"""The rows of a snapshot: written once as ``preprocessed_corpus.txt`` and as an HF
``datasets`` dataset together, and read back from the previous snapshot. The only corpus
module that imports pyarrow and ``datasets``.

The dataset is written as ``Dataset.save_to_disk`` lays it out (one Arrow stream file, its
``state.json`` and ``dataset_info.json``), streamed in record batches as rows arrive: no
second copy of the data at the end, and no ``datasets`` import (about a second) for a build
that reads no previous snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pyarrow as pa

from aicoderd.corpus.snapshot import CORPUS_TXT, DATASET, SEPARATOR

if TYPE_CHECKING:
    import datasets


class Row(NamedTuple):
    text: str
    doc_id: str
    source: str
    uri: str
    kind: str
    language: str | None
    split: str


COLUMNS = Row._fields
_FLUSH_BYTES = 4 * 2**20  # text per Arrow record batch
# What ``datasets`` writes for string features (``datasets.Features(...).to_dict()``).
_FEATURES = {name: {"dtype": "string", "_type": "Value"} for name in COLUMNS}
# ``datasets.Features(...).arrow_schema``: the columns, and the features as metadata.
SCHEMA = pa.schema(
    [(name, pa.string()) for name in COLUMNS],
    metadata={"huggingface": json.dumps({"info": {"features": _FEATURES}})},
)
DATA_FILE = "data-00000-of-00001.arrow"


def _load(directory: Path) -> datasets.Dataset:
    import datasets

    datasets.disable_progress_bars()
    saved = datasets.load_from_disk(str(directory / DATASET))
    if not isinstance(saved, datasets.Dataset):
        raise ValueError(f"{directory / DATASET} is not a single dataset")
    return saved


class RowWriter:
    """Appends rows, in order, to the text file and to an Arrow stream that becomes the
    dataset in :meth:`finish`. ``digest`` identifies the content (ids and splits, in order)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._txt = open(directory / CORPUS_TXT, "w", encoding="utf-8", newline="")  # noqa: SIM115
        (directory / DATASET).mkdir()
        self._arrow = pa.ipc.new_stream(str(directory / DATASET / DATA_FILE), SCHEMA)
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
            self._arrow.write_batch(pa.record_batch(arrays, schema=SCHEMA))
        self._pending, self._pending_bytes = [], 0

    def finish(self) -> None:
        """Close both, write the dataset's metadata as ``save_to_disk`` does, and fsync
        everything."""
        self._flush()
        self._arrow.close()
        self._txt.close()
        state: dict[str, object] = {
            "_data_files": [{"filename": DATA_FILE}],
            "_fingerprint": self.digest.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        info = {"citation": "", "description": "", "features": _FEATURES, "homepage": "",
                "license": ""}  # fmt: skip
        with open(self.directory / DATASET / "state.json", "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
        with open(self.directory / DATASET / "dataset_info.json", "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2)
        _fsync_tree(self.directory)

    def abort(self) -> None:
        self._txt.close()
        self._arrow.close()


def previous_rows(directory: Path) -> Iterator[Row]:
    """The rows of an earlier snapshot, in order."""
    saved = _load(directory)
    for batch in saved.iter(batch_size=512):
        yield from (Row(*values) for values in zip(*(batch[c] for c in COLUMNS), strict=True))


def count_rows(directory: Path) -> int | None:
    """Rows in a snapshot's dataset; None when it cannot be read."""
    try:
        return len(_load(directory))
    except (OSError, ValueError):
        return None


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
