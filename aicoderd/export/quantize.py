"""Which GGML type each tensor gets, and the in-process quantization (``gguf.quants``).

Rules, as llama.cpp's converter applies them: 1-D tensors (norms, biases, RoPE factors) stay
F32; a 2-D tensor whose rows do not fill whole blocks of the target type falls back to F16;
the ternary types keep the embeddings and the output matrix in F16 (quantizing those to
ternary destroys the model). K-quants are not made here: llama.cpp's ``llama-quantize`` or
Ollama makes them from an F16 file (:mod:`aicoderd.export.build`).

Every type is computed row by row, so a matrix is encoded in pieces of rows on a few threads
(numpy releases the GIL in its loops): the bytes are the same as in one piece.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import cast

import gguf
import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError
from aicoderd.gguf_types import OUTPUT_TYPES, OutputType, output_type_name

_KEEP_F16_FOR = ("TQ1_0", "TQ2_0")
_EMBEDDINGS = ("token_embd.weight", "output.weight")
_PIECE = 1 << 18  # elements encoded at once: a few hundred KB, in cache, GIL released
_MAX_THREADS = 4


def output_type(name: str) -> OutputType:
    try:
        return OUTPUT_TYPES[output_type_name(name)]
    except ValueError as exc:
        raise ExportError(str(exc)) from None


@cache
def can_quantize(ggml: str) -> bool:
    """Whether this gguf package quantizes ``ggml`` in Python (some types only dequantize)."""
    qtype = gguf.GGMLQuantizationType[ggml]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    try:
        gguf.quants.quantize(np.zeros((1, max(block, 256)), dtype=np.float32), qtype)
    except (NotImplementedError, KeyError):
        return False
    return True


def tensor_type(gguf_name: str, shape: tuple[int, ...], target: OutputType) -> str:
    """The GGML type ``gguf_name`` is written as."""
    if len(shape) < 2:
        return "F32"
    if target.ggml in _KEEP_F16_FOR and gguf_name in _EMBEDDINGS:
        return "F16"
    block, _ = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[target.ggml]]
    if shape[-1] % block:
        return "F16"
    return target.ggml


def byte_shape(shape: tuple[int, ...], ggml: str) -> tuple[int, ...]:
    return tuple(gguf.quants.quant_shape_to_byte_shape(shape, gguf.GGMLQuantizationType[ggml]))


def _encode_rows(data: npt.NDArray[np.float32], ggml: str, out: npt.NDArray[np.generic]) -> None:
    """Rows of ``data`` in type ``ggml`` into ``out`` (float16 for F16, else raw bytes)."""
    if ggml == "F16":
        np.copyto(out, data, casting="same_kind")
    else:
        out[...] = _row_quantizer(ggml)(data)


@cache
def _row_quantizer(ggml: str) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.uint8]]:
    """gguf's quantizer of whole rows. ``gguf.quants.quantize`` cuts a matrix into groups of
    16 rows, which for a 768-wide model spends more time in Python than in numpy; the rows are
    independent, so larger pieces give the same bytes (a test compares every type)."""
    rows = getattr(gguf.quants, ggml).quantize_rows
    return cast(Callable[[npt.NDArray[np.float32]], npt.NDArray[np.uint8]], rows)


class Encoder:
    """Tensors to GGML bytes, a large matrix in pieces of rows spread over a few threads."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, min(_MAX_THREADS, threads or _usable_cpus()))
        self._pool = ThreadPoolExecutor(self.threads, "gguf-encode") if self.threads > 1 else None

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def encode(self, data: npt.NDArray[np.float32], ggml: str) -> npt.NDArray[np.uint8]:
        """``data`` in type ``ggml``, as raw bytes ready to write."""
        if ggml == "F32":
            return np.ascontiguousarray(data, dtype=np.float32).view(np.uint8)
        out: npt.NDArray[np.generic] = (
            np.empty(data.shape, np.float16)
            if ggml == "F16"
            else np.empty(byte_shape(data.shape, ggml), np.uint8)
        )
        pieces = _pieces(data)
        if self._pool is None or len(pieces) == 1:
            for a, b in pieces:
                _encode_rows(data[a:b], ggml, out[a:b])
        else:
            done = [self._pool.submit(_encode_rows, data[a:b], ggml, out[a:b]) for a, b in pieces]
            for job in done:
                job.result()
        return out.view(np.uint8)


def _pieces(data: npt.NDArray[np.float32]) -> list[tuple[int, int]]:
    """Row ranges of about ``_PIECE`` elements (a 1-D tensor is one piece)."""
    if data.ndim < 2:
        return [(0, len(data))]
    rows = len(data)
    step = max(1, _PIECE // max(1, data.size // rows))
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
