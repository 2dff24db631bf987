"""Step ``dedup``: exact duplicates (a hash of the text with trailing whitespace removed) and
near duplicates (MinHash LSH, verified by the signatures' estimated Jaccard similarity).

A document is compared with the documents kept before it in processing order and removed if
it matches one; otherwise it is kept and indexed. The index lives in memory as sorted arrays
of 64-bit keys (about ``8 x (bands + 1)`` bytes per kept document, against ~6 KB in
datasketch's dict-of-lists ``MinHashLSH``); what persists between builds is each document's
fingerprint in the ledger, from which the builder reloads the index — so an incremental build
compares against exactly the documents a full build would.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import numpy.typing as npt

from aicoderd.config import CorpusConfig
from aicoderd.corpus.document import Doc
from aicoderd.corpus.minhash import (
    U32,
    U64,
    band_keys,
    first_bytes,
    join,
    lsh_params,
    signatures,
    similarity,
)
from aicoderd.corpus.steps import Step, StepContext, StepStats, register

_TRAILING_SPACE = re.compile(rb"[ \t]+\n")
# The characters str.rstrip() removes that are ASCII (each one byte in UTF-8).
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_REPLACE_ROUNDS = 4  # one bytes.replace round removes one space or tab from the end of each line


def exact_key(text: str) -> int:
    """64 bits of the sha256 of the text without trailing whitespace (on lines and at the
    end), as a signed integer (what SQLite stores)."""
    return exact_key_bytes(text.encode("utf-8"))


def exact_key_bytes(data: bytes, trailing: bool = True) -> int:
    """:func:`exact_key` of the text whose UTF-8 encoding is ``data``, computed on the bytes
    (space, tab and newline never occur inside a multi-byte UTF-8 sequence). ``trailing``:
    False when no line of ``data`` is known to end in a space or tab."""
    data = data.rstrip(_ASCII_SPACE)
    if data and data[-1] >= 0x80:  # may end in non-ASCII whitespace: str.rstrip decides
        data = data.decode("utf-8").rstrip().encode("utf-8")
    for _ in range(_REPLACE_ROUNDS if trailing else 0):
        if b" \n" not in data and b"\t\n" not in data:
            break
        # bytes.replace runs at memory speed, where a regex substitution per line is slow
        data = data.replace(b" \n", b"\n").replace(b"\t\n", b"\n")
    else:
        if b" \n" in data or b"\t\n" in data:
            data = _TRAILING_SPACE.sub(b"\n", data)
    digest = hashlib.sha256(data).digest()
    return int.from_bytes(digest[:8], "little", signed=True)


def _trailing_space(raw: bytes, first: npt.NDArray[np.intp]) -> list[bool]:
    """For each document of a :func:`join`-ed batch, whether a line of it ends in a space or
    a tab (one vectorised pass instead of two substring searches per document)."""
    buf = np.frombuffer(raw, dtype=np.uint8)
    newline = np.flatnonzero(buf[1:] == 10) + 1  # the padding comes first: never at 0
    before = buf[newline - 1]
    spaced = newline[(before == 32) | (before == 9)]
    docs = np.zeros(len(first) - 1, dtype=np.bool_)
    docs[np.searchsorted(first, spaced, side="right") - 1] = True
    return [bool(x) for x in docs]


class KeyIndex:
    """64-bit keys → the orders of the documents that hold them. Sorted arrays answer a whole
    batch's queries in one call; keys added during a batch wait in a dict until :meth:`seal`."""

    def __init__(self) -> None:
        self.keys: U64 = np.empty(0, np.uint64)
        self.orders = np.empty(0, np.int64)
        self.recent: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.keys) + sum(map(len, self.recent.values()))

    def add(self, keys: U64, order: int) -> None:
        for key in keys.tolist():
            self.recent.setdefault(key, []).append(order)

    def add_sorted(self, keys: U64, orders: np.ndarray) -> None:
        """Bulk load (``keys`` flat, ``orders`` aligned)."""
        self._merge(keys, orders)

    def seal(self) -> None:
        if self.recent:
            keys = np.array([k for k, v in self.recent.items() for _ in v], dtype=np.uint64)
            orders = np.array([o for v in self.recent.values() for o in v], dtype=np.int64)
            self.recent = {}
            self._merge(keys, orders)

    def _merge(self, keys: U64, orders: np.ndarray) -> None:
        all_keys = np.concatenate([self.keys, keys])
        all_orders = np.concatenate([self.orders, orders])
        order = np.argsort(all_keys, kind="stable")
        self.keys, self.orders = all_keys[order], all_orders[order]

    def sealed_matches(self, queries: U64) -> list[set[int]]:
        """For each row of ``queries`` (documents x keys), the orders sharing any key."""
        rows, width = queries.shape
        flat = queries.ravel()
        lo = np.searchsorted(self.keys, flat, side="left")
        hi = np.searchsorted(self.keys, flat, side="right")
        out: list[set[int]] = [set() for _ in range(rows)]
        for i in np.flatnonzero(hi > lo).tolist():
            out[i // width].update(self.orders[lo[i] : hi[i]].tolist())
        return out

    def recent_matches(self, keys: U64) -> set[int]:
        found: set[int] = set()
        for key in keys.tolist():
            found.update(self.recent.get(key, ()))
        return found


@register
class Dedup(Step):
    name = "dedup"
    needs_text = False  # replayed documents arrive with their stored fingerprint only

    def __init__(self, config: CorpusConfig, context: StepContext) -> None:
        super().__init__(config, context)
        self.bands, self.rows = lsh_params(config.near_dedup_threshold, config.minhash_permutations)
        self.exact = KeyIndex()
        self.near = KeyIndex()
        self._batch: dict[int, tuple[str, U32 | None]] = {}

    def preload(self, orders: np.ndarray, exact: np.ndarray, sigs: U32 | None) -> None:
        """Index documents kept by earlier builds (``sigs`` rows may be all EMPTY)."""
        self.exact.add_sorted(exact.astype(np.int64).view(np.uint64), orders)
        if sigs is not None and self.config.near_dedup and len(orders):
            has = sigs[:, 0] != np.uint32(0xFFFFFFFF)
            keys = band_keys(sigs[has], self.bands, self.rows)
            self.near.add_sorted(keys.ravel(), np.repeat(orders[has], self.bands))

    def run(self, docs: list[Doc], stats: StepStats) -> None:
        self._batch = {}
        self._fingerprint([d for d in docs if d.text is not None], stats)
        keys = self._keys(docs)
        exact = np.array([d.exact for d in docs], dtype=np.int64).view(np.uint64)[:, None]
        exact_hits = self.exact.sealed_matches(exact)
        near_hits = self.near.sealed_matches(keys) if keys is not None else None
        for i, doc in enumerate(docs):
            self._decide(doc, exact[i], exact_hits[i], keys, near_hits, i, stats)
        self.exact.seal()
        self.near.seal()

    def _fingerprint(self, fresh: list[Doc], stats: StepStats) -> None:
        if not fresh:
            return
        blobs = [d.data for d in fresh]
        raw = join(blobs)
        trailing = _trailing_space(raw, first_bytes(blobs))
        sigs = signatures(
            blobs, self.config.minhash_permutations, self.config.shingle_tokens, raw=raw
        )
        for doc, blob, sig, spaced in zip(fresh, blobs, sigs, trailing, strict=True):
            doc.exact = exact_key_bytes(blob, trailing=spaced)
            doc.signature = None if sig[0] == np.uint32(0xFFFFFFFF) else sig
            if doc.signature is None:
                stats.counts["too_short_for_near_dedup"] += 1

    def _keys(self, docs: list[Doc]) -> U64 | None:
        if not self.config.near_dedup:
            return None
        empty = np.full(self.config.minhash_permutations, 0xFFFFFFFF, dtype=np.uint32)
        sigs = np.stack([d.signature if d.signature is not None else empty for d in docs])
        return band_keys(sigs, self.bands, self.rows)

    def _decide(
        self,
        doc: Doc,
        exact: U64,
        exact_hits: set[int],
        keys: U64 | None,
        near_hits: list[set[int]] | None,
        i: int,
        stats: StepStats,
    ) -> None:
        same = exact_hits | self.exact.recent_matches(exact)
        if same:
            doc.remove("dedup.exact", "same text as a kept document", self._lookup(min(same))[0])
            return
        if keys is not None and near_hits is not None and doc.signature is not None:
            best, best_order = 0.0, -1
            for order in sorted(near_hits[i] | self.near.recent_matches(keys[i])):
                sig = self._lookup(order)[1]
                score = similarity(doc.signature, sig) if sig is not None else 0.0
                if score > best:
                    best, best_order = score, order
            stats.counts["near_candidates"] += len(near_hits[i])
            if best >= self.config.near_dedup_threshold:
                doc.remove(
                    "dedup.near", f"estimated Jaccard {best:.2f}", self._lookup(best_order)[0]
                )
                return
        self.exact.add(exact, doc.order)
        if keys is not None and doc.signature is not None:
            self.near.add(keys[i], doc.order)
        self._batch[doc.order] = (doc.doc_id, doc.signature)

    def _lookup(self, order: int) -> tuple[str, U32 | None]:
        found = self._batch.get(order)
        if found is not None:
            return found
        return self.context.lookup(order)
