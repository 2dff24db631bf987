"""The fake's own GGUF header decoder, with the rules of Ollama's ``fs/ggml``:
magic (either byte order), version, KV types 0-12, at most four dimensions, every tensor's
bytes inside the file, ``general.file_type`` read only when stored as a uint32. Written apart
from :mod:`aicoderd.ollama.ggufinfo` on purpose (its own tables, its own reading): tests
compare the two on the same files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import IO, Any

MAGIC = b"GGUF"
# KV value types 0-7 and 10-12 → struct codes (7, a bool, is one byte); 8 and 9 are read apart.
_SCALAR = dict(zip((0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12), "BbHhIifBQqd", strict=True))
_STRING, _ARRAY, _UINT32, _BOOL = 8, 9, 4, 7
# ggml tensor type → (elements per block, bytes per block), as fs/ggml sizes them.
_BLOCKS = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),
    28: (1, 8), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
# general.file_type → Ollama's FileType.String(); anything else is "unknown".
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "MXFP4", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 32: "BF16",
}  # fmt: skip


class BadGGUF(Exception):
    """What Ollama's decoder would answer (the message is its text)."""


@dataclass
class Decoded:
    kv: dict[str, Any]
    tensor_elements: list[int] = field(default_factory=list)
    file_type_id: int | None = None  # general.file_type when stored as a uint32

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture") or "unknown")

    @property
    def file_type(self) -> str:
        """As create and ``/api/show`` name it: 0 (all F32) or absent is "unknown"."""
        return FILE_TYPES.get(self.file_type_id or -1, "unknown")

    @property
    def listed_file_type(self) -> str:
        """As ``/api/tags`` names it: its own reader maps 0 to F32."""
        return FILE_TYPES.get(-1 if self.file_type_id is None else self.file_type_id, "unknown")

    @property
    def parameters(self) -> int:
        return sum(self.tensor_elements)


class _Cursor:
    def __init__(self, fh: IO[bytes], order: str) -> None:
        self.fh, self.order = fh, order

    def raw(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) < n:
            raise BadGGUF("unexpected EOF")
        return data

    def num(self, code: str) -> Any:
        return struct.unpack(self.order + code, self.raw(struct.calcsize(code)))[0]

    def text(self) -> str:
        n = self.num("Q")
        if n > 1 << 30:
            raise BadGGUF(f"string length {n} is too large")
        return self.raw(n).decode("utf-8", "replace")

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in _SCALAR:
            got = self.num(_SCALAR[kind])
            return bool(got) if kind == _BOOL else got
        if kind == _STRING:
            return self.text()
        if kind == _ARRAY and depth == 0:
            inner, count = self.num("I"), self.num("Q")
            if inner not in _SCALAR and inner != _STRING:
                raise BadGGUF(f"invalid type: {inner}")
            if count > 1 << 28:
                raise BadGGUF(f"array length {count} is too large")
            return [self.value(inner, 1) for _ in range(count)]
        raise BadGGUF(f"invalid type: {kind}")


def decode(path: Path) -> Decoded:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic not in (MAGIC, MAGIC[::-1]):
            raise BadGGUF("supplied file was not in GGUF format")
        cur = _Cursor(fh, "<" if magic == MAGIC else ">")
        if cur.num("I") < 1:
            raise BadGGUF("invalid version")
        n_tensors, n_kv = cur.num("Q"), cur.num("Q")
        out = Decoded({})
        for _ in range(n_kv):
            key, kind = cur.text(), cur.num("I")
            out.kv[key] = cur.value(kind)
            if key == "general.file_type" and kind == _UINT32:
                out.file_type_id = out.kv[key]
        spans = [_tensor(cur, out) for _ in range(n_tensors)]
        align = out.kv.get("general.alignment", 32)
        if not align:
            raise BadGGUF("general.alignment must be non-zero")
        data_start = (fh.tell() + align - 1) // align * align
    for name, offset, nbytes in spans:
        if data_start + offset + nbytes > size:
            end = data_start + offset + nbytes
            raise BadGGUF(f"tensor {name!r} offset+size ({end}) exceeds file size ({size})")
    return out


def _tensor(cur: _Cursor, out: Decoded) -> tuple[str, int, int]:
    name, dims = cur.text(), cur.num("I")
    if dims > 4:
        raise BadGGUF(f"tensor {name!r} has {dims} dimensions")
    shape = [cur.num("Q") for _ in range(dims)]
    kind, offset = cur.num("I"), cur.num("Q")
    if kind not in _BLOCKS:
        raise BadGGUF(f"tensor {name!r} has unknown type {kind}")
    block, block_bytes = _BLOCKS[kind]
    if shape and shape[0] % block:
        raise BadGGUF(f"tensor {name!r} rows are not a multiple of {block}")
    elements = prod(shape)
    out.tensor_elements.append(elements)
    return name, offset, elements // block * block_bytes
