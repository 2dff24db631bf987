"""The merged model: the LoRA folded into the dequantized base weights, exported by the
project's converter with the base's vocabulary carried over from its GGUF (tokens, merges,
pre-tokenizer, special ids, chat template), checked in llama.cpp against the merged model in
PyTorch, and written at the base's own quantization (Q8_0 in process; Q4_K_M / Q4_K_S through
llama-quantize when a checkout is built, else as F16 that Ollama quantizes on create)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.adapt.base import DEFAULT_TYPE, Base
from aicoderd.export import convert, llamacpp
from aicoderd.export.build import BuildOptions, build
from aicoderd.export.verify import Reference
from aicoderd.gguf_types import OUTPUT_TYPES, Method
from aicoderd.training import report

if TYPE_CHECKING:
    from aicoderd.config import Settings

MERGED_DIR = "merged"


def out_type(base: Base, llama_cpp_dir: Path | None) -> tuple[str, str | None]:
    """The type to write and, when it is not the base's own, why."""
    wanted = OUTPUT_TYPES[base.out_type]
    makeable = (
        wanted.method is Method.IN_PROCESS
        or wanted.ollama is not None
        or llamacpp.quantize_binary(llama_cpp_dir) is not None
    )
    if makeable:
        return wanted.name, None
    return DEFAULT_TYPE, f"{wanted.name} needs llama.cpp's llama-quantize; written as q8_0"


def export(
    model: Any,
    base: Base,
    out_dir: Path,
    gguf_name: str,
    version: str,
    metrics: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """Merge (in place: ``model`` is the merged model after), save, export and check."""
    merged = model.merge_and_unload()
    model_dir = out_dir / MERGED_DIR
    merged.save_pretrained(str(model_dir))
    base.hf_tokenizer.save_pretrained(str(model_dir))
    report.write_metrics(model_dir, {"kind": "adapt", **metrics})
    kind, note = out_type(base, settings.export.llama_cpp_dir)
    meta = convert.Metadata(
        name=gguf_name,
        version=version,
        extra={"adapt.base": base.source.label},
        carry=base.carry,
    )
    opts = replace(
        BuildOptions.from_settings(settings),
        out_type=kind,
        verify=True,
        meta=meta,
        reference=Reference(merged, base.encode_prompt),
    )
    result = build(model_dir, out_dir / f"{gguf_name}-{version}-{kind}.gguf", opts)
    return result | ({"note": note} if note else {})
