"""MinHash signatures for a batch of documents at once, and LSH banding over them.

Shingles are runs of ``shingle_tokens`` tokens, a token being a run of ``[A-Za-z0-9_]``
(bigcode's near-deduplication tokenizer; every other byte separates). Signatures use
one-permutation hashing with densification (Shrivastava & Li, 2014): each shingle is hashed
once, the top bits pick one of ``num_perm`` bins and each bin keeps its minimum, bins left
empty borrow from the next filled bin. Like ``num_perm`` independent permutations, the share
of equal bins estimates the Jaccard similarity of two shingle sets, but the cost is one hash
per shingle instead of ``num_perm`` — what makes near-dedup fit in a 20 MB/s budget. Every
step is vectorised over the whole batch (documents joined by NUL, which no token contains),
and a document's signature depends on its own bytes only, never on the batch it came in.

Tokens are hashed from their first and last 16 bytes and their length (tokens over 32 bytes
are rare; two that differ only in the middle count as one token).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
EMPTY = np.uint32(0xFFFFFFFF)

_TOKEN_BYTE = np.zeros(256, np.int8)
_TOKEN_BYTE[list(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")] = 1
_TOKEN_TABLE = _TOKEN_BYTE.astype(np.uint8).tobytes()
_PAD = 32  # zero bytes around the batch, so every 16-byte window read stays inside it

# Fixed odd multipliers (from a seeded generator): changing them changes every signature.
_RNG = np.random.default_rng(0x5EED_C0DE)
_TOKEN_MUL = _RNG.integers(1, 2**63, size=5, dtype=np.uint64) | np.uint64(1)
_SHINGLE_MUL = _RNG.integers(1, 2**63, size=16, dtype=np.uint64) | np.uint64(1)
_BAND_MUL = _RNG.integers(1, 2**63, size=1024, dtype=np.uint64) | np.uint64(1)
_BAND_SALT = np.uint64(0x9E3779B97F4A7C15)
_BORROW_STEP = np.uint32(0x9E3779B1)


def _masks() -> tuple[U64, U64, U64, U64]:
    """Per token length 0..16: masks keeping the token's bytes of two 8-byte words read at
    its start (``head0``, ``head1``) and two read ending at its end (``tail0``, ``tail1``)."""
    full = 2**64 - 1

    def low(n: int) -> int:  # the first n bytes of a little-endian word
        return (1 << (8 * n)) - 1 if n < 8 else full

    def high(n: int) -> int:  # the last n bytes
        return full ^ low(8 - n) if n > 0 else 0

    head0 = [low(min(k, 8)) for k in range(17)]
    head1 = [low(max(k - 8, 0)) for k in range(17)]
    tail1 = [high(min(k, 8)) for k in range(17)]
    tail0 = [high(max(k - 8, 0)) for k in range(17)]
    return tuple(np.array(m, dtype=np.uint64) for m in (head0, head1, tail0, tail1))  # type: ignore[return-value]


_HEAD0, _HEAD1, _TAIL0, _TAIL1 = _masks()


def _mix(x: U64) -> U64:
    """splitmix64's finaliser, in place: every input bit reaches every output bit."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def join(blobs: list[bytes]) -> bytes:
    """The batch as :func:`signatures` reads it: documents joined by NUL, padded."""
    return bytes(_PAD) + b"\0".join(blobs) + bytes(_PAD)


def first_bytes(blobs: list[bytes]) -> npt.NDArray[np.intp]:
    """Where each document starts in :func:`join`'s buffer, and where the padding starts."""
    return np.cumsum([_PAD] + [len(b) + 1 for b in blobs])


def signatures(
    blobs: list[bytes], num_perm: int, shingle_tokens: int, raw: bytes | None = None
) -> U32:
    """One row of ``num_perm`` uint32 per document (UTF-8 bytes); a row of :data:`EMPTY` for
    a document with fewer tokens than one shingle. ``raw``: ``join(blobs)``, if in hand."""
    if raw is None:
        raw = join(blobs)
    # bytes.translate maps every byte to 0/1 several times faster than a numpy table lookup
    is_token = np.frombuffer(raw.translate(_TOKEN_TABLE), dtype=np.bool_)
    edges = np.flatnonzero(is_token[1:] != is_token[:-1]) + 1  # alternately starts and ends
    starts, ends = edges[0::2], edges[1::2]
    first = first_bytes(blobs)  # each document's first byte
    # tokens are in byte order: each document's tokens are one run (no search per token)
    runs = np.diff(np.searchsorted(starts, first, side="left"), append=len(starts))
    token_doc = np.repeat(np.arange(len(first), dtype=np.intp), runs)
    with np.errstate(over="ignore"):
        tokens = _token_hashes(raw, starts, ends)
        k = shingle_tokens
        n = len(tokens) - k + 1
        sig = np.full(len(blobs) * num_perm, EMPTY, dtype=np.uint32)
        if n > 0:
            shingles = tokens[:n] * _SHINGLE_MUL[0]
            for i in range(1, k):
                shingles += tokens[i : i + n] * _SHINGLE_MUL[i]
            inside = token_doc[:n] == token_doc[k - 1 :]  # no shingle spans two documents
            shingles = _mix(shingles[inside])
            bits = np.uint64(64 - int(math.log2(num_perm)))
            slot = token_doc[:n][inside] * num_perm + (shingles >> bits).astype(np.int64)
            np.minimum.at(sig, slot, (shingles & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    return _densify(sig.reshape(len(blobs), num_perm))


def _token_hashes(raw: bytes, starts: npt.NDArray[np.intp], ends: npt.NDArray[np.intp]) -> U64:
    # Every byte offset viewed as the start of an (unaligned) little-endian 8-byte word.
    words = np.ndarray(shape=(len(raw) - 7,), dtype="<u8", buffer=raw, strides=(1,))
    length = ends - starts
    c = np.minimum(length, 16)
    h = words[starts]
    h &= _HEAD0[c]
    h *= _TOKEN_MUL[0]
    t = words[ends - 8]
    t &= _TAIL1[c]
    t *= _TOKEN_MUL[3]
    h += t
    t = length.astype(np.uint64)
    t *= _TOKEN_MUL[4]
    h += t
    # The second head word and the first tail word are masked off entirely for tokens of up
    # to 8 bytes (most): those terms add nothing, so they are computed for longer ones only.
    long = np.flatnonzero(length > 8)
    if len(long):
        s, e, cl = starts[long], ends[long], c[long]
        part = (words[s + 8] & _HEAD1[cl]) * _TOKEN_MUL[1]
        part += (words[e - 16] & _TAIL0[cl]) * _TOKEN_MUL[2]
        h[long] += part
    return _mix(h)


def _densify(sig: U32) -> U32:
    """Fill empty bins from the next filled bin to the right (circularly), shifted by the
    distance so that borrowed values differ from the bin they came from."""
    empty = sig == EMPTY
    if not empty.any():
        return sig
    width = sig.shape[1]
    col = np.arange(width)
    filled_at = np.where(empty, 2 * width, col)
    twice = np.concatenate([filled_at, filled_at + width], axis=1)
    nearest = np.minimum.accumulate(twice[:, ::-1], axis=1)[:, ::-1][:, :width]
    none = nearest[:, 0] >= 2 * width  # no shingle at all: leave the row empty
    nearest = np.where(none[:, None], col, nearest)
    source = np.take_along_axis(sig, nearest % width, axis=1)
    with np.errstate(over="ignore"):
        borrowed = source + (nearest - col).astype(np.uint32) * _BORROW_STEP
    out = np.where(empty & ~none[:, None], borrowed, sig)
    return out.astype(np.uint32)


def similarity(a: U32, b: U32) -> float:
    """Estimated Jaccard similarity of two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)


@functools.lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising the false positive plus false negative probability mass
    around ``threshold``, as datasketch chooses them."""
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)

    def area(ys: npt.NDArray[np.float64], xs: npt.NDArray[np.float64]) -> float:
        return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)))

    best, best_err = (1, num_perm), math.inf
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = area(1 - (1 - below**rows) ** bands, below)
            fn = area((1 - above**rows) ** bands, above)
            if fp + fn < best_err:
                best, best_err = (bands, rows), fp + fn
    return best


def band_keys(sig: U32, bands: int, rows: int) -> U64:
    """(documents, bands) 64-bit keys; two documents share a key where a whole band agrees."""
    n = sig.shape[0]
    parts = sig[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    with np.errstate(over="ignore"):
        keys = (parts * _BAND_MUL[:rows]).sum(axis=2, dtype=np.uint64)
        keys += np.arange(bands, dtype=np.uint64) * _BAND_SALT
        return _mix(keys)
