"""Everything the converter names, as data: our metadata keys, the output types, the
pre-tokenizers llama.cpp reproduces, the file names of an HF model directory.

No heavy import here (the CLI reads the type list for its ``--type`` choices); ``gguf`` enum
members are named by string and resolved where the ``gguf`` package is already loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# --- our own metadata, beside llama.cpp's ``general.*`` -------------------------------------
KEY_PREFIX = "aicoder."
KEY_FORMAT = "aicoder.format"  # bumped when the meaning of aicoder.* keys changes
KEY_CORPUS_SNAPSHOT = "aicoder.corpus.snapshot"
KEY_METRIC = "aicoder.metrics."  # + metric name, e.g. aicoder.metrics.eval_loss
KEY_SOURCE_TYPE = "aicoder.source_type"  # the HF dtype the weights were exported from
KEY_CONTEXT = "aicoder.context_length"  # the trained context, read back by deploy (num_ctx)
KEY_VERSION = "general.version"
FORMAT_VERSION = 1

# Scalar metrics copied from metrics.json (lists and dicts such as the loss history are not).
METRIC_KEYS = (
    "kind",
    "steps",
    "tokens_seen",
    "train_loss",
    "eval_loss",
    "perplexity",
    "parameters",
    "wall_seconds",
    "precision",
)

# --- an HF model directory ------------------------------------------------------------------
CONFIG_JSON = "config.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG_JSON = "tokenizer_config.json"
CHAT_TEMPLATE_JINJA = "chat_template.jinja"
METRICS_JSON = "metrics.json"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"

# --- pre-tokenizers: how our tokenizer splits text → llama.cpp's ``tokenizer.ggml.pre`` --------
TOKENIZER_MODEL = "gpt2"  # llama.cpp's name for byte-level BPE
PRE_GPT2 = "gpt-2"  # GPT-2's regex, inside a ByteLevel pre-tokenizer with use_regex
PRE_LLAMA3 = "llama-bpe"  # Llama-3's regex in a Split, then ByteLevel without regex
PRE_QWEN2 = "qwen2"  # Qwen2's regex (single digits) in a Split, then ByteLevel without regex


class Method(StrEnum):
    """How an output type is produced."""

    IN_PROCESS = "in-process"  # gguf.quants, tensor by tensor while writing
    LLAMA_QUANTIZE = "llama-quantize"  # an F16 GGUF, then llama.cpp's llama-quantize
    OLLAMA = "ollama"  # an F16 GGUF, quantized by Ollama on create


@dataclass(frozen=True)
class OutputType:
    """One ``--type``: the GGML tensor type of 2-D weights and the file type recorded."""

    name: str  # as the user types it
    ggml: str  # gguf.GGMLQuantizationType member
    file_type: str  # gguf.LlamaFileType member (general.file_type)
    method: Method
    lossless: bool = False  # held to the strict parity limit
    ollama: str | None = None  # Ollama's quantize name, where Ollama can make it from F16


def _types() -> dict[str, OutputType]:
    t = [
        OutputType("f32", "F32", "ALL_F32", Method.IN_PROCESS, lossless=True),
        OutputType("f16", "F16", "MOSTLY_F16", Method.IN_PROCESS, lossless=True),
        OutputType("bf16", "BF16", "MOSTLY_BF16", Method.IN_PROCESS, lossless=True),
        OutputType("q8_0", "Q8_0", "MOSTLY_Q8_0", Method.IN_PROCESS, ollama="q8_0"),
        OutputType("q4_0", "Q4_0", "MOSTLY_Q4_0", Method.IN_PROCESS),
        OutputType("q4_1", "Q4_1", "MOSTLY_Q4_1", Method.IN_PROCESS),
        OutputType("q5_0", "Q5_0", "MOSTLY_Q5_0", Method.IN_PROCESS),
        OutputType("q5_1", "Q5_1", "MOSTLY_Q5_1", Method.IN_PROCESS),
        OutputType("tq1_0", "TQ1_0", "MOSTLY_TQ1_0", Method.IN_PROCESS),
        OutputType("tq2_0", "TQ2_0", "MOSTLY_TQ2_0", Method.IN_PROCESS),
        OutputType("mxfp4", "MXFP4", "MOSTLY_MXFP4_MOE", Method.IN_PROCESS),
        OutputType("q4_k_m", "Q4_K", "MOSTLY_Q4_K_M", Method.LLAMA_QUANTIZE, ollama="q4_K_M"),
        OutputType("q4_k_s", "Q4_K", "MOSTLY_Q4_K_S", Method.LLAMA_QUANTIZE, ollama="q4_K_S"),
        OutputType("q5_k_m", "Q5_K", "MOSTLY_Q5_K_M", Method.LLAMA_QUANTIZE),
        OutputType("q5_k_s", "Q5_K", "MOSTLY_Q5_K_S", Method.LLAMA_QUANTIZE),
        OutputType("q6_k", "Q6_K", "MOSTLY_Q6_K", Method.LLAMA_QUANTIZE),
        OutputType("q3_k_m", "Q3_K", "MOSTLY_Q3_K_M", Method.LLAMA_QUANTIZE),
        OutputType("q2_k", "Q2_K", "MOSTLY_Q2_K", Method.LLAMA_QUANTIZE),
    ]
    return {o.name: o for o in t}


OUTPUT_TYPES = _types()
IN_PROCESS_TYPES = [n for n, o in OUTPUT_TYPES.items() if o.method is Method.IN_PROCESS]

# llama.cpp checkout layout (the folder llama.cpp/ at the repository root, or configured).
LLAMA_QUANTIZE_BIN = "build/bin/llama-quantize"
LLAMA_CONVERT_SCRIPT = "convert_hf_to_gguf.py"
KEY_OLLAMA_QUANTIZE = "aicoder.ollama_quantize"  # Ollama makes this type from the F16 file
VERIFY_SUFFIX = ".verify.json"  # the parity report beside each GGUF
REJECTED_SUFFIX = ".rejected"  # a GGUF that failed the parity check, kept for inspection
