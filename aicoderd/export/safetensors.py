"""Lazy reading of ``*.safetensors`` files: the header is parsed once, each tensor is read
(through a memory map) only when asked for, so converting needs about one tensor of memory."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError
from aicoderd.export import constants as C

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


@dataclass(frozen=True)
class TensorRef:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in ``file``
    end: int


def _header(path: Path) -> list[TensorRef]:
    try:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            meta = json.loads(fh.read(n))
    except (OSError, struct.error, ValueError) as exc:
        raise ExportError(f"cannot read the safetensors header of {path}: {exc}") from exc
    refs = []
    for name, t in meta.items():
        if name == "__metadata__":
            continue
        if t["dtype"] not in _DTYPES:
            raise ExportError(f"{path.name}: tensor {name} has unsupported dtype {t['dtype']}")
        begin, end = t["data_offsets"]
        refs.append(
            TensorRef(name, path, t["dtype"], tuple(t["shape"]), 8 + n + begin, 8 + n + end)
        )
    return refs


def tensors(model_dir: Path) -> list[TensorRef]:
    """Every tensor of the model, in file order (sharded checkpoints through their index)."""
    index = model_dir / C.SAFETENSORS_INDEX
    if index.exists():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise ExportError(f"cannot read {index}: {exc}") from exc
    elif (model_dir / C.SAFETENSORS).exists():
        files = [C.SAFETENSORS]
    else:
        raise ExportError(f"no {C.SAFETENSORS} in {model_dir} (save the model with safetensors)")
    return [ref for f in files for ref in sorted(_header(model_dir / f), key=lambda r: r.start)]


def load(ref: TensorRef) -> npt.NDArray[np.float32]:
    """One tensor as float32 (BF16 widened exactly: its bits are float32's top half)."""
    count = int(np.prod(ref.shape)) if ref.shape else 1
    raw = np.memmap(ref.file, dtype=_DTYPES[ref.dtype], mode="r", offset=ref.start, shape=(count,))
    if ref.dtype == "BF16":
        data = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        data = np.asarray(raw, dtype=np.float32)
    del raw
    return data.reshape(ref.shape)
