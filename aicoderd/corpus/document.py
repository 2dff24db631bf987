"""One document on its way through the corpus steps."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from aicoderd.store.ledger import KEPT, REMOVED, LedgerRow


@dataclass(frozen=True)
class Removal:
    """Why a document left the corpus: ``reason`` is ``<step>.<check>`` (a stable key that
    manifests count), ``detail`` says what was measured."""

    reason: str
    detail: str = ""
    dup_of: str | None = None  # the kept document a duplicate matched


@dataclass
class Doc:
    doc_id: str  # sha256 of the document text as stored (content address)
    order: int  # processing order: decisions that depend on earlier documents follow it
    source: str
    uri: str
    kind: str
    language: str | None
    text: str | None  # None: a known document whose dedup decision is replayed from the ledger
    removal: Removal | None = None
    redactions: Counter[str] = field(default_factory=Counter)
    split: str = "train"
    # Dedup fingerprint: 64-bit key of the exact-match hash, and the MinHash signature (None when
    # the text has too few tokens for one shingle).
    exact: int | None = None
    signature: npt.NDArray[np.uint32] | None = None
    # The UTF-8 encoding of ``text``, made once for the steps that work on bytes; valid while
    # ``_data_of`` is the very object ``text`` holds (a step that rewrites the text drops it).
    _data: bytes = field(default=b"", repr=False, compare=False)
    _data_of: str | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """``text`` as UTF-8 (encoded at most once per text)."""
        text = self.text
        assert text is not None
        if self._data_of is not text:
            self._data, self._data_of = text.encode("utf-8"), text
        return self._data

    def set_text(self, text: str, data: bytes) -> None:
        """Replace the text when its UTF-8 encoding is already in hand."""
        self.text, self._data, self._data_of = text, data, text

    @property
    def live(self) -> bool:
        return self.removal is None

    def remove(self, reason: str, detail: str = "", dup_of: str | None = None) -> None:
        self.removal = Removal(reason, detail, dup_of)

    def ledger_row(self) -> LedgerRow:
        """This document's decision (and fingerprint, if it reached dedup) for the ledger."""
        gone = self.removal
        return LedgerRow(
            doc_id=self.doc_id,
            order=self.order,
            source=self.source,
            uri=self.uri,
            kind=self.kind,
            language=self.language,
            status=KEPT if gone is None else REMOVED,
            reason=None if gone is None else gone.reason,
            detail=None if gone is None else gone.detail,
            dup_of=None if gone is None else gone.dup_of,
            split=self.split if gone is None else None,
            size=None if self.text is None else len(self.data),
            redactions=json.dumps(dict(sorted(self.redactions.items())))
            if self.redactions
            else None,
            exact=self.exact,
            sig=None if self.signature is None else self.signature.astype("<u4").tobytes(),
        )


def signature(blob: bytes | None) -> npt.NDArray[np.uint32] | None:
    """A MinHash signature as the ledger stores it (little-endian uint32), decoded."""
    return None if blob is None else np.frombuffer(blob, dtype="<u4").astype(np.uint32)
