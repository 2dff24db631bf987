"""The tokenizer, read from an HF ``tokenizer.json`` into what llama.cpp needs: tokens, token
types, merges, the pre-tokenizer tag, special token ids and the add-bos/eos flags.

Only tokenizers llama.cpp reproduces bit for bit are accepted: byte-level BPE with no
normalizer, split by GPT-2's, Llama-3's or Qwen2's regex. Anything else would tokenize
differently in llama.cpp and Ollama without any error, so it is refused here, by name.

The tokenizer is read as ``AutoTokenizer`` builds it, not as the file spells it: transformers
5 lets a model's tokenizer class rebuild the pipeline (a ``qwen2`` model dir gets Qwen2's
split regex whatever its ``tokenizer.json`` says), and the GGUF must tokenize as the model
was trained and is used. For the directories the training stage writes, transformers takes
``tokenizer.json`` as written, so it is read with ``tokenizers`` alone: importing transformers
(and torch with it) would cost seconds and ~300 MB, several times the conversion itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aicoderd.errors import ExportError
from aicoderd.export import constants as C
from aicoderd.training import prompt
from aicoderd.training.tokenizer import LLAMA3_REGEX

# Qwen2's split regex (llama.cpp's ``qwen2`` pre-tokenizer): digits one by one.
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPLIT_REGEXES = {LLAMA3_REGEX: C.PRE_LLAMA3, QWEN2_REGEX: C.PRE_QWEN2}

# llama.cpp's token types (gguf.TokenType values), kept here so this module needs no gguf.
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str  # tokenizer.ggml.pre
    add_bos: bool
    add_eos: bool
    special_ids: dict[str, int] = field(default_factory=dict)  # "bos"/"eos"/"pad"/"eot"/"fim_*"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    return data


def detect_pre(tok: dict[str, Any]) -> str:
    """The llama.cpp pre-tokenizer that splits text exactly as this tokenizer does."""
    pre = tok.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return C.PRE_GPT2
    steps = pre.get("pretokenizers") or []
    if (
        pre.get("type") == "Sequence"
        and len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[0].get("pattern", {}).get("Regex") in _SPLIT_REGEXES
        and steps[0].get("behavior") == "Isolated"
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
    ):
        return _SPLIT_REGEXES[steps[0]["pattern"]["Regex"]]
    raise ExportError(
        "the tokenizer's pre-tokenizer is not GPT-2's, Llama-3's or Qwen2's regex; llama.cpp"
        f" would split text differently (pre_tokenizer: {json.dumps(pre)[:200]})"
    )


def _check_model(tok: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = tok.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError("only byte-level BPE tokenizers can be exported (no byte fallback)")
    # NFC alone is tolerated: the corpus is NFC already, so only non-NFC prompts could differ.
    if (tok.get("normalizer") or {"type": "NFC"}).get("type") != "NFC":
        raise ExportError("the tokenizer has a normalizer, which llama.cpp's BPE does not apply")
    return model


# What transformers 5 loads from tokenizer.json unchanged (a test compares with AutoTokenizer):
# a generic tokenizer class, no flag or token table that makes it rebuild the post-processor
# or the added tokens, for a model type whose tokenizer class it does not substitute.
_GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")
_REBUILDING_KEYS = ("auto_map", "add_bos_token", "add_eos_token", "added_tokens_decoder")
_PLAIN_MODEL_TYPES = ("llama",)
_PATCHED_ABOVE = 100_000  # transformers patches the regex of vocabularies larger than this


def loaded_as_written(model_dir: Path, config: dict[str, Any], tok: dict[str, Any]) -> bool:
    """Whether ``AutoTokenizer`` would use ``tokenizer.json`` (parsed: ``tok``) as it is."""
    tc = _read_json(model_dir / C.TOKENIZER_CONFIG_JSON)
    return (
        tc.get("tokenizer_class") in _GENERIC_CLASSES
        and not any(key in tc for key in _REBUILDING_KEYS)
        and config.get("model_type") in _PLAIN_MODEL_TYPES
        and tok.get("post_processor") is not None
        and len((tok.get("model") or {}).get("vocab") or {}) <= _PATCHED_ABOVE
    )


def backend(model_dir: Path, config: dict[str, Any]) -> Any:
    """The ``tokenizers.Tokenizer`` the model is used with."""
    path = model_dir / C.TOKENIZER_JSON
    written = _read_json(path)
    if not written:
        raise ExportError(f"{path} is missing: only HF fast tokenizers can be exported")
    if not loaded_as_written(model_dir, config, written):
        return as_loaded(model_dir)
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises plain Exception
        raise ExportError(f"cannot load the tokenizer in {path}: {exc}") from exc


def as_loaded(model_dir: Path) -> Any:
    """The ``tokenizers.Tokenizer`` that ``AutoTokenizer`` builds from ``model_dir``."""
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot load the tokenizer in {model_dir}: {exc}") from exc
    tokenizer = getattr(hf, "backend_tokenizer", None)
    if tokenizer is None:
        raise ExportError(f"{model_dir}: only HF fast tokenizers can be exported")
    return tokenizer


def _special_flags(tok: Any) -> tuple[bool, bool]:
    """Whether encoding adds a token in front / at the end (the post-processor decides)."""
    plain = tok.encode("a", add_special_tokens=False).ids
    full = tok.encode("a", add_special_tokens=True).ids
    start = full.index(plain[0]) if plain and plain[0] in full else 0
    return start > 0, len(full) - start > len(plain)


def read(model_dir: Path, vocab_size: int, config: dict[str, Any]) -> Vocab:
    """The tokenizer in ``model_dir``, padded to the model's ``vocab_size``."""
    loaded = backend(model_dir, config)
    tok: dict[str, Any] = json.loads(loaded.to_str())
    model = _check_model(tok)
    pre = detect_pre(tok)
    by_id: dict[int, tuple[str, int]] = {i: (t, NORMAL) for t, i in model["vocab"].items()}
    for added in tok.get("added_tokens") or []:
        by_id[added["id"]] = (added["content"], CONTROL if added.get("special") else USER_DEFINED)
    if max(by_id) >= vocab_size:
        raise ExportError(f"the tokenizer has id {max(by_id)} but the model only {vocab_size}")
    tokens, types = [], []
    for i in range(vocab_size):
        text, kind = by_id.get(i, (f"[PAD{i}]", UNUSED))
        tokens.append(text)
        types.append(kind)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    add_bos, add_eos = _special_flags(loaded)
    return Vocab(
        tokens,
        types,
        merges,
        pre,
        add_bos,
        add_eos,
        _special_ids(model_dir, config, tokens),
    )


def _special_ids(model_dir: Path, config: dict[str, Any], tokens: list[str]) -> dict[str, int]:
    index = {t: i for i, t in enumerate(tokens)}
    tc = _read_json(model_dir / C.TOKENIZER_CONFIG_JSON)
    ids: dict[str, int] = {}
    for role in ("bos", "eos", "pad"):
        text = tc.get(f"{role}_token")
        if isinstance(text, dict):
            text = text.get("content")
        if isinstance(text, str) and text in index:
            ids[role] = index[text]
        elif isinstance(config.get(f"{role}_token_id"), int):
            ids[role] = int(config[f"{role}_token_id"])
    # The prompt format's tokens, so llama.cpp and Ollama know end-of-turn and infill.
    for role, text in (
        ("eot", prompt.EOT),
        ("fim_pre", prompt.FIM_PREFIX),
        ("fim_suf", prompt.FIM_SUFFIX),
        ("fim_mid", prompt.FIM_MIDDLE),
    ):
        if text in index:
            ids[role] = index[text]
    return ids
