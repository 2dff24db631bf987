"""The base model, ready to train on: its tokenizer rebuilt and proved against llama.cpp, its
fill-in-the-middle tokens, the type its adapted GGUF is written as, and its weights loaded into
PyTorch (dequantized by transformers' GGUF support)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.adapt import vocab
from aicoderd.adapt.source import Source
from aicoderd.errors import TrainingError
from aicoderd.export import constants as EC
from aicoderd.export import vocab as export_vocab
from aicoderd.gguf_types import OUTPUT_TYPES

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

DEFAULT_TYPE = "q8_0"  # when the base's own type cannot be written


@dataclass
class Base:
    source: Source
    tokenizer: Tokenizer
    hf_tokenizer: PreTrainedTokenizerFast
    eos: int
    fim: vocab.Fim | None
    out_type: str  # the export type of the adapted model (the base's own when possible)
    carry: dict[str, tuple[Any, Any, Any]] | None  # the GGUF's tokenizer.* fields
    parity: vocab.Parity | None  # the tokenizer against llama.cpp (GGUF sources)

    def encode_plain(self, text: str) -> list[int]:
        return vocab.encode_plain(self.tokenizer, text)

    def encode_prompt(self, text: str) -> list[int]:
        return vocab.encode_prompt(self.tokenizer, text)


def prepare(source: Source, documents: list[str], default_type: str = "f16") -> Base:
    """The tokenizer (GGUF: rebuilt and checked on ``documents``; refused when llama.cpp
    disagrees) and what the adapted model is written as."""
    if source.gguf is not None:
        v = vocab.read(source.gguf)
        tok = vocab.build(v)
        parity = vocab.check_parity(source.gguf, tok, documents)
        if not parity.passed:
            raise TrainingError(
                f"{source.label}: the rebuilt tokenizer differs from llama.cpp's"
                f" ({'; '.join(parity.problems[:3])}); nothing trained"
            )
        hf = vocab.wrap(tok, v)
        return Base(source, tok, hf, v.eos, v.fim, _out_type(source), v.fields, parity)
    assert source.hf_dir is not None
    config = json.loads((source.hf_dir / EC.CONFIG_JSON).read_text())
    tok = export_vocab.backend(source.hf_dir, config)
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok)  # type: ignore[no-untyped-call]
    eos = _eos(config, tok)
    tokens = [tok.id_to_token(i) for i in range(tok.get_vocab_size(with_added_tokens=True))]
    fim = vocab.find_fim({}, tokens)
    hf.eos_token = hf.pad_token = tokens[eos]
    return Base(source, tok, hf, eos, fim, default_type, None, None)


def _eos(config: dict[str, Any], tok: Tokenizer) -> int:
    value = config.get("eos_token_id")
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, int):
        raise TrainingError("the model's config.json names no eos_token_id")
    if value >= tok.get_vocab_size(with_added_tokens=True):
        raise TrainingError(f"eos_token_id {value} is outside the vocabulary")
    return value


def _out_type(source: Source) -> str:
    """The base's quantization as an export type; a type that cannot be written here
    (an unusual k-quant) becomes Q8_0."""
    name = (source.file_type or "").lower()
    return name if name in OUTPUT_TYPES else DEFAULT_TYPE


def load_model(source: Source) -> Any:
    """The base's weights in float32 (a GGUF is dequantized by transformers)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        if source.gguf is not None:
            model = AutoModelForCausalLM.from_pretrained(
                str(source.gguf.parent),
                gguf_file=source.gguf.name,
                dtype=torch.float32,
                local_files_only=True,
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(source.hf_dir), dtype=torch.float32, local_files_only=True
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise TrainingError(f"transformers cannot load {source.label}: {exc}") from exc
    model.config.architectures = [type(model).__name__]  # a GGUF's config names none
    # Dequantized, the weights are plain float32: nothing keeps the merged model from saving.
    model.hf_quantizer = None  # type: ignore[assignment]
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model


def write_tokenizer(base: Base, out: Path) -> None:
    """The rebuilt tokenizer beside a saved model (read it with ``tokenizers``: transformers'
    ``AutoTokenizer`` may swap in the model type's own pre-tokenizer)."""
    base.hf_tokenizer.save_pretrained(str(out))
