"""The GGUF output types, as data, once: what ``export.type`` / ``--type`` accept and how each
is made, and the quantizations Ollama makes itself on create (``ollama.quantize`` /
``--quantize``). A shared leaf: the configuration and the CLI check names against these tables,
the export and deploy stages act on them. No heavy import: ``gguf`` enum members are named by
string and resolved where ``gguf`` is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Ollama's ``quantize`` names (create from an F16/BF16 GGUF, Ollama >= 0.7), by the lower-case
# spelling aicoderd accepts; ``q4_k`` is Ollama's own alias of Q4_K_M.
OLLAMA_QUANTIZE = {"q8_0": "q8_0", "q4_k_m": "q4_K_M", "q4_k_s": "q4_K_S", "q4_k": "q4_K_M"}


class Method(StrEnum):
    """How an output type is produced."""

    IN_PROCESS = "in-process"  # gguf.quants, tensor by tensor while writing
    LLAMA_QUANTIZE = "llama-quantize"  # an F16 GGUF, then llama.cpp's llama-quantize (or Ollama)


@dataclass(frozen=True)
class OutputType:
    """One ``--type``: the GGML tensor type of 2-D weights and the file type recorded."""

    name: str  # as the user types it
    ggml: str  # gguf.GGMLQuantizationType member
    file_type: str  # gguf.LlamaFileType member (general.file_type)
    method: Method
    lossless: bool = False  # held to the strict parity limit

    @property
    def ollama(self) -> str | None:
        """Ollama's name for this type, where Ollama can make it from an F16 file."""
        return OLLAMA_QUANTIZE.get(self.name)


def _types() -> dict[str, OutputType]:
    inproc, kquant = Method.IN_PROCESS, Method.LLAMA_QUANTIZE
    t = [
        OutputType("f32", "F32", "ALL_F32", inproc, lossless=True),
        OutputType("f16", "F16", "MOSTLY_F16", inproc, lossless=True),
        OutputType("bf16", "BF16", "MOSTLY_BF16", inproc, lossless=True),
        OutputType("q8_0", "Q8_0", "MOSTLY_Q8_0", inproc),
        OutputType("q4_0", "Q4_0", "MOSTLY_Q4_0", inproc),
        OutputType("q4_1", "Q4_1", "MOSTLY_Q4_1", inproc),
        OutputType("q5_0", "Q5_0", "MOSTLY_Q5_0", inproc),
        OutputType("q5_1", "Q5_1", "MOSTLY_Q5_1", inproc),
        OutputType("tq1_0", "TQ1_0", "MOSTLY_TQ1_0", inproc),
        OutputType("tq2_0", "TQ2_0", "MOSTLY_TQ2_0", inproc),
        OutputType("mxfp4", "MXFP4", "MOSTLY_MXFP4_MOE", inproc),
        OutputType("q4_k_m", "Q4_K", "MOSTLY_Q4_K_M", kquant),
        OutputType("q4_k_s", "Q4_K", "MOSTLY_Q4_K_S", kquant),
        OutputType("q5_k_m", "Q5_K", "MOSTLY_Q5_K_M", kquant),
        OutputType("q5_k_s", "Q5_K", "MOSTLY_Q5_K_S", kquant),
        OutputType("q6_k", "Q6_K", "MOSTLY_Q6_K", kquant),
        OutputType("q3_k_m", "Q3_K", "MOSTLY_Q3_K_M", kquant),
        OutputType("q2_k", "Q2_K", "MOSTLY_Q2_K", kquant),
    ]
    return {o.name: o for o in t}


OUTPUT_TYPES = _types()


def output_type_name(value: str) -> str:
    """``value`` as a known output type name (any case), else ValueError listing them."""
    if value.lower() not in OUTPUT_TYPES:
        raise ValueError(f"unknown output type {value!r} (known: {', '.join(OUTPUT_TYPES)})")
    return value.lower()


def ollama_quantize_name(value: str) -> str:
    """Ollama's spelling of a quantize type (any case), else ValueError listing them."""
    try:
        return OLLAMA_QUANTIZE[value.lower()]
    except KeyError:
        known = ", ".join(OLLAMA_QUANTIZE)
        raise ValueError(f"Ollama cannot quantize to {value!r} (only {known})") from None
