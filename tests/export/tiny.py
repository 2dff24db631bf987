"""Tiny real models for the export tests: random-weight Llama / Qwen2 checkpoints saved with
``save_pretrained``, and a byte-level BPE tokenizer trained here on a few KB of code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from aicoderd.training import prompt
from aicoderd.training.tokenizer import LLAMA3_REGEX

CODE = '''
def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        if not self.items:
            raise IndexError("pop from empty stack")
        return self.items.pop()


function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("%d: %s\\n", i, argv[i]);
    return 0;
}

SELECT id, name, created_at FROM users WHERE active = 1 ORDER BY created_at DESC LIMIT 100;
for f in *.txt; do wc -l "$f"; done
import numpy as np
x = np.arange(12345).reshape(3, -1)
print(f"{x.shape=} {x.sum():,}")
'''


def train_tokenizer(out: Path, pretokenizer: str = "gpt2", vocab_size: int = 1024) -> Any:
    """A byte-level BPE tokenizer with the prompt format's special tokens, saved in ``out``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if pretokenizer == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(prompt.SPECIAL_TOKENS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CODE * 3, CODE.upper(), CODE.replace("    ", "\t")], trainer)
    tok.add_special_tokens(prompt.SPECIAL_TOKENS)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=prompt.EOT,
        pad_token=prompt.EOT,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = prompt.chat_template()
    hf.save_pretrained(str(out))
    return hf


@dataclass(frozen=True)
class Shape:
    arch: str = "llama"  # llama | qwen2
    hidden: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 512
    tied: bool = False
    context: int = 256
    rope: dict[str, Any] | None = None
    pretokenizer: str = "gpt2"
    dtype: str = "float32"  # saved dtype
    init_std: float = 0.08  # larger than the default: peaked next-token distributions


def make_model(out: Path, shape: Shape = Shape(), metrics: dict[str, Any] | None = None) -> Path:
    """A random-weight model and its tokenizer in ``out`` (an HF ``save_pretrained`` dir)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1234)
    tok = train_tokenizer(out, shape.pretokenizer)
    vocab = len(tok)
    eos = tok.convert_tokens_to_ids(prompt.EOT)
    common: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.context,
        rms_norm_eps=1e-5,
        tie_word_embeddings=shape.tied,
        initializer_range=shape.init_std,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, **(shape.rope or {})}
    if shape.arch == "llama":
        model: Any = LlamaForCausalLM(LlamaConfig(**common, rope_parameters=rope))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, rope_parameters=rope))
        with torch.no_grad():  # biases are zero at init; make them count
            for layer in model.model.layers:
                attn = layer.self_attn
                for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    with torch.no_grad():  # norms are ones at init; vary them so a mix-up shows
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.uniform_(0.5, 1.5)
    model = model.to(getattr(torch, shape.dtype))
    model.save_pretrained(str(out))
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics))
    return out
