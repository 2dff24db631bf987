"""Model shapes: ``LlamaForCausalLM`` from a preset or explicit dimensions.

Hidden and intermediate sizes are multiples of 256, so every llama.cpp quantization type
(K-quants need rows divisible by 256) applies to every weight. Head size 64 throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError

if TYPE_CHECKING:
    from transformers import LlamaConfig


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    vocab: int
    context: int


# Parameter counts with the preset's vocabulary (untied input and output embeddings):
PRESETS = {
    "tiny": Shape(
        hidden=256, intermediate=768, layers=2, heads=4, vocab=1024, context=128
    ),  # 2.2 M
    "small": Shape(
        hidden=512, intermediate=1536, layers=6, heads=8, vocab=8192, context=512
    ),  # 29 M
    "base": Shape(
        hidden=768, intermediate=2048, layers=12, heads=12, vocab=16384, context=1024
    ),  # 110 M
}


def shape(cfg: TrainingConfig) -> Shape:
    """The preset, with any explicit dimension from the config put over it."""
    s = PRESETS[cfg.preset]
    s = replace(
        s,
        hidden=cfg.hidden_size or s.hidden,
        intermediate=cfg.intermediate_size or s.intermediate,
        layers=cfg.num_layers or s.layers,
        heads=cfg.num_heads or s.heads,
        vocab=cfg.vocab_size or s.vocab,
        context=cfg.context_length or s.context,
    )
    for name, value in (("hidden_size", s.hidden), ("intermediate_size", s.intermediate)):
        if value % 256:
            raise TrainingError(f"{name} {value} is not a multiple of 256")
    if s.hidden % s.heads:
        raise TrainingError(f"hidden_size {s.hidden} is not divisible by {s.heads} heads")
    return s


def llama_config(s: Shape, vocab_size: int, eos_token_id: int) -> LlamaConfig:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.heads,
        max_position_embeddings=s.context,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def parameter_count(s: Shape) -> int:
    """Parameters of the model ``s`` describes (embeddings included), without building it."""
    per_layer = 4 * s.hidden * s.hidden + 3 * s.hidden * s.intermediate + 2 * s.hidden
    return s.layers * per_layer + 2 * s.vocab * s.hidden + s.hidden


def activation_bytes_per_token(hidden: int, intermediate: int, layers: int) -> int:
    """fp32 bytes autograd keeps per token for the backward pass: in each layer the two norms'
    inputs and outputs, q, k, v, the attention output and its projection's input (9 x hidden),
    and the MLP's gate, up, activation and product (4 x intermediate)."""
    return 4 * (layers * (9 * hidden + 4 * intermediate) + 3 * hidden)
