"""The byte-level BPE tokenizer, trained from scratch on the train split.

Byte-level: every byte sequence is representable, so code round-trips byte for byte (tabs,
whitespace runs, blank lines, any Unicode). The pre-tokenizer is one llama.cpp reproduces bit
for bit: GPT-2's regex (llama.cpp ``tokenizer.ggml.pre = "gpt-2"``, parity measured, the
default) or Llama-3's (``"llama-bpe"``; groups digits by three and keeps newline runs apart,
better for code, parity to be confirmed by the export's llama.cpp check). No normalizer, no
prefix space. The special tokens of :mod:`aicoderd.training.prompt` come after the learned
vocabulary, as GPT-2's ``<|endoftext|>`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aicoderd.errors import TrainingError
from aicoderd.training import prompt

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Llama-3's pre-tokenizer regex, as in its tokenizer.json.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def build(texts: Iterable[str], vocab_size: int, pretokenizer: str) -> PreTrainedTokenizerBase:
    """Train a tokenizer of ``vocab_size`` tokens in all (special tokens included)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    learned = vocab_size - len(prompt.SPECIAL_TOKENS)
    if learned < 256 + 1:
        raise TrainingError(f"vocab_size {vocab_size} leaves no room for merges")
    tok = Tokenizer(models.BPE())
    if pretokenizer == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pretokenizer == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        raise TrainingError(f"unknown pre-tokenizer {pretokenizer!r}")
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=learned,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(prompt.SPECIAL_TOKENS)
    hf = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token=prompt.EOT,
        pad_token=prompt.EOT,
        extra_special_tokens=prompt.SPECIAL_TOKENS[1:],
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = prompt.chat_template()
    return hf


def load(directory: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tok: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(
            str(directory), local_files_only=True
        )
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the tokenizer in {directory}: {exc}") from exc
    return tok


def encode_text(tok: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of plain text: special-token strings inside it stay plain text (a document
    that mentions ``<|endoftext|>`` must not end itself)."""
    backend = tok.backend_tokenizer
    backend.encode_special_tokens = True
    try:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    finally:
        backend.encode_special_tokens = False


def token_id(tok: PreTrainedTokenizerBase, token: str) -> int:
    """The id of one token (``convert_tokens_to_ids`` is typed for lists too)."""
    found = tok.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TrainingError(f"the tokenizer has no single token {token!r}")
    return found


def fingerprint(tok: PreTrainedTokenizerBase) -> str:
    """Identifies the tokenizer's behaviour (vocabulary, merges, pre-tokenizer)."""
    return hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()[:16]
