"""Everything the converter names, as data: our metadata keys, the pre-tokenizers llama.cpp
reproduces, the file names of an HF model directory and of a llama.cpp checkout. The output
types themselves are :mod:`aicoderd.gguf_types` (the configuration checks names against them).
"""

from __future__ import annotations

from aicoderd.gguf_types import OUTPUT_TYPES, Method

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
    "fim_rate",
    # the evaluation gate's figures and verdict (training/gate.py writes them into metrics.json)
    "eval_loss_per_byte",
    "bits_per_byte",
    "xz_bits_per_byte",
    "zstd_bits_per_byte",
    "infill_exact_match",
    "next_line_exact_match",
    "completion_cases",
    "gate",
    "gate_reason",
    "against_eval_loss_per_byte",
    "against_infill_exact_match",
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


IN_PROCESS_TYPES = [n for n, o in OUTPUT_TYPES.items() if o.method is Method.IN_PROCESS]

# llama.cpp checkout layout (the folder llama.cpp/ at the repository root, or configured).
LLAMA_QUANTIZE_BIN = "build/bin/llama-quantize"
LLAMA_CONVERT_SCRIPT = "convert_hf_to_gguf.py"
KEY_OLLAMA_QUANTIZE = "aicoder.ollama_quantize"  # Ollama makes this type from the F16 file
VERIFY_SUFFIX = ".verify.json"  # the parity report beside each GGUF
REJECTED_SUFFIX = ".rejected"  # a GGUF that failed the parity check, kept for inspection
SCRATCH_SUFFIX = ".tmp"  # files being written (hidden too): never matched by *.gguf
