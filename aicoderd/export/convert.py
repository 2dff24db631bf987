"""The built-in HF → GGUF converter.

Two passes over the checkpoint: the first plans every tensor from the safetensors headers
alone (name, shape, output type, byte size) so the GGUF header can be written up front; the
second reads, transforms, quantizes and writes one tensor at a time. The file is written under
a temporary name beside the target and renamed into place once complete and synced.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError
from aicoderd.export import arch as archs
from aicoderd.export import constants as C
from aicoderd.export import quantize, vocab
from aicoderd.export import safetensors as st
from aicoderd.fsutil import fsync_dir
from aicoderd.gguf_types import Method, OutputType
from aicoderd.training import prompt

Progress = Callable[[int, int, str], None]
_LENGTH = struct.Struct("<Q")
_INT32 = range(-(2**31), 2**31)


class _Writer(gguf.GGUFWriter):
    """gguf's writer, packing the vocabulary's long string and int32 arrays in one pass
    instead of value by value (~0.1 s of CPU for 16 K tokens and merges). Same bytes: the
    converter's tests compare with gguf's own packing; anything else goes to gguf."""

    def _pack_val(
        self,
        val: Any,
        vtype: gguf.GGUFValueType,
        add_vtype: bool,
        sub_type: gguf.GGUFValueType | None = None,
    ) -> bytes:
        packed = None
        if vtype == gguf.GGUFValueType.ARRAY and self.endianess == gguf.GGUFEndian.LITTLE:
            packed = _pack_list(val, sub_type)
        if packed is None:
            return bytes(super()._pack_val(val, vtype, add_vtype, sub_type))
        return (struct.pack("<I", vtype) if add_vtype else b"") + packed


def _pack_list(val: Any, sub_type: gguf.GGUFValueType | None) -> bytes | None:
    """A non-empty list of str or of int32 as GGUF array bytes; None for anything else."""
    if not isinstance(val, list) or not val:
        return None
    if all(type(v) is str for v in val):
        kind = gguf.GGUFValueType.STRING
        body = b"".join([_LENGTH.pack(len(b)) + b for b in (v.encode() for v in val)])
    elif all(type(v) is int and v in _INT32 for v in val):
        kind = gguf.GGUFValueType.INT32
        body = np.asarray(val, dtype="<i4").tobytes()
    else:
        return None
    if sub_type not in (None, kind):
        return None
    return struct.pack("<IQ", kind, len(val)) + body


@dataclass
class Metadata:
    """``general.*`` values; unset ones come from the model directory's name and metrics."""

    name: str | None = None
    version: str | None = None
    description: str | None = None
    license: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # more aicoder.* string keys
    # GGUF keys written as they are instead of the model dir's tokenizer and our chat template
    # (key → (value, type, array item type)): a public model's vocabulary, carried over
    carry: dict[str, tuple[Any, Any, Any]] | None = None


@dataclass
class Planned:
    gguf_name: str
    ggml: str
    shape: tuple[int, ...]
    ref: st.TensorRef | None  # None: computed (extra tensor)
    data: npt.NDArray[np.float32] | None = None


@dataclass
class ExportResult:
    path: Path
    type: str
    architecture: str
    tensors: int
    bytes: int
    seconds: float
    context_length: int
    tensor_types: dict[str, int]


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / C.CONFIG_JSON
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{model_dir} is not an HF model directory (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    return config


def read_metrics(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / C.METRICS_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def plan(arch: archs.Architecture, refs: list[st.TensorRef], out: OutputType) -> list[Planned]:
    planned = []
    for ref in refs:
        name = arch.tensor_name(ref.name)
        if name is not None:
            planned.append(
                Planned(name, quantize.tensor_type(name, ref.shape, out), ref.shape, ref)
            )
    for name, data in arch.extra_tensors():
        planned.append(Planned(name, "F32", tuple(data.shape), None, data))
    missing = arch.required() - {p.gguf_name for p in planned}
    if missing:
        raise ExportError(f"the checkpoint lacks {', '.join(sorted(missing))}")
    return planned


def export(
    model_dir: Path,
    out_path: Path,
    out_type: str = "f16",
    meta: Metadata | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Convert the HF model in ``model_dir`` to ``out_path`` (an in-process output type)."""
    started = time.monotonic()
    target = quantize.output_type(out_type)
    if target.method is not Method.IN_PROCESS or not quantize.can_quantize(target.ggml):
        raise ExportError(f"{out_type} is not made in process (llama-quantize or Ollama makes it)")
    config = read_config(model_dir)
    arch = archs.for_config(config)
    meta = meta or Metadata()
    voc = None if meta.carry else vocab.read(model_dir, arch.vocab_size, config)
    tensors = plan(arch, st.tensors(model_dir), target)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}{C.SCRATCH_SUFFIX}")
    try:
        writer = _Writer(tmp, arch.arch_name)
        _write_metadata(writer, arch, voc, target, model_dir, meta, config)
        for t in tensors:
            shape = quantize.byte_shape(t.shape, t.ggml)
            writer.add_tensor_info(
                t.gguf_name,
                shape,
                np.dtype(np.uint8),
                int(np.prod(shape)),
                raw_dtype=gguf.GGMLQuantizationType[t.ggml],
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        _write_tensors(writer, arch, tensors, progress)
        _close(writer)
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    types: dict[str, int] = {}
    for t in tensors:
        types[t.ggml] = types.get(t.ggml, 0) + 1
    return ExportResult(
        out_path,
        target.name,
        arch.arch_name,
        len(tensors),
        out_path.stat().st_size,
        time.monotonic() - started,
        arch.context,
        types,
    )


def _write_tensors(
    writer: gguf.GGUFWriter,
    arch: archs.Architecture,
    tensors: list[Planned],
    progress: Progress | None,
) -> None:
    with quantize.Encoder() as encoder:
        for i, t in enumerate(tensors):
            if t.ref is None:
                assert t.data is not None  # computed tensors carry their data
                data = t.data
            else:
                data = arch.transform(t.ref.name, st.load(t.ref))
            writer.write_tensor_data(encoder.encode(data, t.ggml))
            del data
            if progress:
                progress(i + 1, len(tensors), t.gguf_name)


def _close(writer: gguf.GGUFWriter) -> None:
    for fout in writer.fout or []:
        fout.flush()
        os.fsync(fout.fileno())
    writer.close()


def _write_metadata(
    w: gguf.GGUFWriter,
    arch: archs.Architecture,
    voc: vocab.Vocab | None,
    target: OutputType,
    model_dir: Path,
    meta: Metadata,
    config: dict[str, Any],
) -> None:
    metrics = read_metrics(model_dir)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(meta.name or model_dir.resolve().name)
    w.add_string(C.KEY_VERSION, meta.version or model_dir.resolve().name)
    if meta.description:
        w.add_description(meta.description)
    if meta.license:
        w.add_license(meta.license)
    w.add_file_type(int(gguf.LlamaFileType[target.file_type]))
    if not target.lossless:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    arch.write_hparams(w)
    if voc is not None:
        _write_vocab(w, voc)
        w.add_chat_template(prompt.chat_template())
    for key, (value, vtype, item) in (meta.carry or {}).items():
        w.add_key_value(key, value, vtype, item)
    w.add_uint32(C.KEY_FORMAT, C.FORMAT_VERSION)
    w.add_uint32(C.KEY_CONTEXT, arch.context)
    w.add_string(C.KEY_SOURCE_TYPE, str(config.get("torch_dtype") or config.get("dtype") or ""))
    if metrics.get("corpus_snapshot"):
        w.add_string(C.KEY_CORPUS_SNAPSHOT, str(metrics["corpus_snapshot"]))
    for key in C.METRIC_KEYS:
        value = metrics.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            w.add_int64(C.KEY_METRIC + key, value)
        elif isinstance(value, float):
            w.add_float64(C.KEY_METRIC + key, value)
        elif isinstance(value, str):
            w.add_string(C.KEY_METRIC + key, value)
    for key, text in meta.extra.items():
        w.add_string(C.KEY_PREFIX + key, text)


def _write_vocab(w: gguf.GGUFWriter, voc: vocab.Vocab) -> None:
    w.add_tokenizer_model(C.TOKENIZER_MODEL)
    w.add_tokenizer_pre(voc.pre)
    w.add_token_list(voc.tokens)
    w.add_token_types(voc.types)
    w.add_token_merges(voc.merges)
    keys = gguf.Keys.Tokenizer
    for role, key in (
        ("bos", keys.BOS_ID),
        ("eos", keys.EOS_ID),
        ("pad", keys.PAD_ID),
        ("eot", keys.EOT_ID),
        ("fim_pre", keys.FIM_PRE_ID),
        ("fim_suf", keys.FIM_SUF_ID),
        ("fim_mid", keys.FIM_MID_ID),
    ):
        if role in voc.special_ids:
            w.add_uint32(key, voc.special_ids[role])
    w.add_add_bos_token(voc.add_bos)
    w.add_add_eos_token(voc.add_eos)
