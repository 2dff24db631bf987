"""The architecture registry: how one HF ``architectures[0]`` becomes a llama.cpp model.

An architecture says which ``gguf`` model it is, writes its hyper-parameters, names each
tensor (through gguf's own HF → GGUF name map), and transforms the tensors llama.cpp lays out
differently. Add one with :func:`register`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import gguf
import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError

F32Array = npt.NDArray[np.float32]

_REGISTRY: dict[str, type[Architecture]] = {}


def register(*hf_names: str) -> Callable[[type[Architecture]], type[Architecture]]:
    def add(cls: type[Architecture]) -> type[Architecture]:
        for name in hf_names:
            _REGISTRY[name] = cls
        return cls

    return add


def known() -> list[str]:
    return sorted(_REGISTRY)


def for_config(config: dict[str, Any]) -> Architecture:
    names = config.get("architectures") or []
    for name in names:
        if name in _REGISTRY:
            return _REGISTRY[name](config)
    raise ExportError(
        f"architecture {names or '(none in config.json)'} is not supported by the built-in"
        f" converter (supported: {', '.join(known())}); try --converter llamacpp"
    )


class Architecture:
    """Contract: ``gguf_arch`` names the llama.cpp model; :meth:`write_hparams` writes every
    hyper-parameter key llama.cpp requires; :meth:`tensor_name` maps an HF tensor name to its
    GGUF name (None: not exported); :meth:`transform` returns the tensor as llama.cpp wants it;
    :meth:`extra_tensors` yields tensors computed rather than read (e.g. RoPE factors)."""

    gguf_arch: ClassVar[gguf.MODEL_ARCH]

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        try:
            self.hidden = int(config["hidden_size"])
            self.layers = int(config["num_hidden_layers"])
            self.heads = int(config["num_attention_heads"])
            self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
            self.ffn = int(config["intermediate_size"])
            self.vocab_size = int(config["vocab_size"])
            self.context = int(config["max_position_embeddings"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"config.json lacks a usable {exc}") from None
        self.head_dim = int(config.get("head_dim") or self.hidden // self.heads)
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.tied = bool(config.get("tie_word_embeddings", False))
        self.rope = _rope(config)
        self._names = gguf.get_tensor_name_map(self.gguf_arch, self.layers)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def write_hparams(self, w: gguf.GGUFWriter) -> None:
        w.add_context_length(self.context)
        w.add_embedding_length(self.hidden)
        w.add_block_count(self.layers)
        w.add_feed_forward_length(self.ffn)
        w.add_head_count(self.heads)
        w.add_head_count_kv(self.kv_heads)
        w.add_layer_norm_rms_eps(self.eps)
        w.add_rope_freq_base(float(self.rope.get("rope_theta", 10000.0)))
        w.add_rope_dimension_count(self.head_dim)
        if self.head_dim != self.hidden // self.heads:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)
        w.add_vocab_size(self.vocab_size)
        self._write_rope_scaling(w)

    def _write_rope_scaling(self, w: gguf.GGUFWriter) -> None:
        kind = self.rope.get("rope_type", "default")
        if kind in ("default", "llama3"):  # llama3's factors are a tensor (extra_tensors)
            return
        factor = float(self.rope.get("factor", 1.0))
        if kind == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(factor)
        elif kind == "yarn":
            w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
            w.add_rope_scaling_factor(factor)
            orig = self.rope.get("original_max_position_embeddings", self.context)
            w.add_rope_scaling_orig_ctx_len(int(orig))
        else:
            raise ExportError(f"RoPE scaling {kind!r} is not supported by the built-in converter")

    def tensor_name(self, hf_name: str) -> str | None:
        if hf_name.endswith("rotary_emb.inv_freq"):
            return None
        if hf_name == "lm_head.weight" and self.tied:
            return None
        name = self._names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"tensor {hf_name} has no llama.cpp name for {self.arch_name}")
        return str(name)

    def transform(self, hf_name: str, data: F32Array) -> F32Array:
        return data

    def extra_tensors(self) -> Iterator[tuple[str, F32Array]]:
        return iter(())

    def required(self) -> set[str]:
        """GGUF names that must be present (an untied model needs its output matrix)."""
        return set() if self.tied else {"output.weight"}


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings from either transformers 5 (``rope_parameters``) or 4 (``rope_theta`` +
    ``rope_scaling``)."""
    scaling = dict(config.get("rope_scaling") or {})
    params = dict(config.get("rope_parameters") or {})
    merged = {**scaling, **params}
    merged.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    kind = merged.get("rope_type") or merged.get("type") or "default"
    merged["rope_type"] = str(kind).lower()
    return merged


def _permute(w: F32Array, heads: int) -> F32Array:
    """HF's rotate-half q/k rows back to the interleaved pairs llama.cpp's rope expects."""
    shape = w.shape
    return w.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


@register("LlamaForCausalLM")
class Llama(Architecture):
    gguf_arch = gguf.MODEL_ARCH.LLAMA

    def transform(self, hf_name: str, data: F32Array) -> F32Array:
        if hf_name.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            return _permute(data, self.heads)
        if hf_name.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            return _permute(data, self.kv_heads)
        return data

    def extra_tensors(self) -> Iterator[tuple[str, F32Array]]:
        if self.rope["rope_type"] != "llama3":
            return
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", self._llama3_factors()

    def _llama3_factors(self) -> F32Array:
        """Llama 3.1's per-frequency RoPE factors, as transformers computes them."""
        r = self.rope
        base = float(r["rope_theta"])
        factor = float(r.get("factor", 8.0))
        low, high = float(r.get("low_freq_factor", 1.0)), float(r.get("high_freq_factor", 4.0))
        old = float(r.get("original_max_position_embeddings", 8192))
        freqs = 1.0 / (base ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        out = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < old / high:
                out.append(1.0)
            elif wavelen > old / low:
                out.append(factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                out.append(1 / ((1 - smooth) / factor + smooth))
        return np.asarray(out, dtype=np.float32)


@register("Qwen2ForCausalLM")
class Qwen2(Architecture):
    """Qwen2: Llama's layout with q/k/v biases and NEOX-style RoPE (so no permutation)."""

    gguf_arch = gguf.MODEL_ARCH.QWEN2
