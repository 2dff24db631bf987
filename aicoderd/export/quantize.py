"""Which GGML type each tensor gets, and the in-process quantization (``gguf.quants``).

Rules, as llama.cpp's converter applies them: 1-D tensors (norms, biases, RoPE factors) stay
F32; a 2-D tensor whose rows do not fill whole blocks of the target type falls back to F16;
the ternary types keep the embeddings and the output matrix in F16 (quantizing those to
ternary destroys the model). K-quants are not made here: llama.cpp's ``llama-quantize`` or
Ollama makes them from an F16 file (:mod:`aicoderd.export.build`).
"""

from __future__ import annotations

from functools import cache

import gguf
import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError
from aicoderd.gguf_types import OUTPUT_TYPES, OutputType, output_type_name

_KEEP_F16_FOR = ("TQ1_0", "TQ2_0")
_EMBEDDINGS = ("token_embd.weight", "output.weight")


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


def encode(data: npt.NDArray[np.float32], ggml: str) -> npt.NDArray[np.uint8]:
    """``data`` in type ``ggml``, as raw bytes ready to write."""
    qtype = gguf.GGMLQuantizationType[ggml]
    if ggml == "F32":
        out = np.ascontiguousarray(data, dtype=np.float32)
    elif ggml == "F16":
        out = np.ascontiguousarray(data.astype(np.float16))
    else:
        out = gguf.quants.quantize(data, qtype)
    return out.view(np.uint8)
