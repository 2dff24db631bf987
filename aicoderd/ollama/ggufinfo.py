"""A GGUF header reader with Ollama's own rules (its ``fs/ggml`` decoder): magic, version,
KV types 0-12, tensor bounds inside the file, ``general.file_type`` only as a uint32.

Used by the deploy pre-flight: a file Ollama would refuse, or a ``quantize`` it would refuse, is
refused before any upload. It reads the header only, never the tensor data.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import IO, Any

import gguf

from aicoderd.errors import GGUFError

MAGIC = b"GGUF"
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY, UINT32 = 8, 9, 4
MAX_DIMS = 4
# Ollama's FileType names (fs/ggml), by general.file_type; 0 reads as "unknown" in create.
FILE_TYPES = {ft.value: ft.name.removeprefix("MOSTLY_") for ft in gguf.LlamaFileType}
FILE_TYPES[0] = "F32"


@dataclass
class TensorInfo:
    name: str
    type: int
    shape: list[int]
    offset: int
    size: int


@dataclass
class Header:
    version: int
    kv: dict[str, Any]
    tensors: list[TensorInfo] = field(default_factory=list)
    file_type_u32: int | None = None  # general.file_type when it is a uint32, else None

    @property
    def architecture(self) -> str:
        return str(self.kv.get("general.architecture") or "unknown")

    @property
    def file_type(self) -> str:
        """The file type as ``/api/show`` names it (0 or missing → "unknown", Ollama's bug)."""
        if not self.file_type_u32:
            return "unknown"
        return FILE_TYPES.get(self.file_type_u32, "unknown")


class _Reader:
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = self.fh.read(size)
        if len(data) != size:
            raise GGUFError("unexpected EOF")
        return struct.unpack("<" + fmt, data)[0]

    def string(self) -> str:
        n = self.take("Q")
        if n > 1 << 30:
            raise GGUFError(f"string length {n} is too large")
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError("unexpected EOF")
        return data.decode("utf-8", "replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            inner, n = self.take("I"), self.take("Q")
            if inner == ARRAY or (inner not in _SCALARS and inner != STRING):
                raise GGUFError(f"invalid type: {inner}")
            if n > 1 << 28:
                raise GGUFError(f"array length {n} is too large")
            return [self.value(inner) for _ in range(n)]
        raise GGUFError(f"invalid type: {kind}")


def read_header(fh: IO[bytes], file_size: int) -> Header:
    """Parse and bounds-check the header of the GGUF in ``fh`` (positioned at its start)."""
    r = _Reader(fh)
    if fh.read(4) != MAGIC:
        raise GGUFError("supplied file was not in GGUF format")
    version = r.take("I")
    if version < 1:
        raise GGUFError(f"invalid version {version}")
    n_tensors, n_kv = r.take("Q"), r.take("Q")
    kv: dict[str, Any] = {}
    file_type: int | None = None
    for _ in range(n_kv):
        key, kind = r.string(), r.take("I")
        kv[key] = r.value(kind)
        if key == "general.file_type" and kind == UINT32:
            file_type = int(kv[key])
    tensors = []
    for _ in range(n_tensors):
        name, dims = r.string(), r.take("I")
        if dims > MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {dims} dimensions")
        shape = [r.take("Q") for _ in range(dims)]
        kind, offset = r.take("I"), r.take("Q")
        tensors.append(TensorInfo(name, kind, shape, offset, _nbytes(name, kind, shape)))
    alignment = int(kv.get("general.alignment", 32))
    if alignment == 0:
        raise GGUFError("general.alignment must be non-zero")
    start = -(-fh.tell() // alignment) * alignment
    for t in tensors:
        end = start + t.offset + t.size
        if end > file_size:
            raise GGUFError(
                f"tensor {t.name!r} offset+size ({end}) exceeds file size ({file_size})"
            )
    return Header(version, kv, tensors, file_type)


def _nbytes(name: str, kind: int, shape: list[int]) -> int:
    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        raise GGUFError(f"tensor {name!r} has unknown type {kind}") from None
    n = math.prod(shape)
    if shape and shape[0] % block:
        raise GGUFError(f"tensor {name!r} rows are not a multiple of {block}")
    return n // block * type_size


def read_file(path: str) -> Header:
    import os

    with open(path, "rb") as fh:
        return read_header(fh, os.fstat(fh.fileno()).st_size)
