"""One adaptation, start to finish; ``aicoder adapt`` and the daemon's ``adapt`` job both run it.

1. the source: an Ollama model (its blob, read only), a GGUF file or an HF directory;
2. its tokenizer rebuilt and proved against llama.cpp; its weights loaded, LoRA attached;
3. LoRA steps on the corpus (FIM in the base's tokens) and the feedback (resumable);
4. the gate against the base on the eval split: nothing goes further unless it improves;
5. the adapter GGUF (mode ``adapter``) and/or the merged GGUF, each checked in llama.cpp;
6. deployed beside the base as ``<name>-<suffix>:<version>`` (Ollama sources), the adapter
   falling back to merged when Ollama refuses it.

Everything lands in the output directory; ``report.json`` says what was measured, decided,
written and deployed. The feedback a run started with is pinned there, so a resumed run trains
on the same records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.adapt import adapter, data, gate, lora, merged
from aicoderd.adapt import deploy as adapt_deploy
from aicoderd.adapt.base import Base, load_model, prepare
from aicoderd.adapt.source import Source, resolve
from aicoderd.errors import OllamaError, OllamaUnavailable
from aicoderd.export.build import settle
from aicoderd.export.verify import Limits, Reference, verify
from aicoderd.fsutil import atomic_write
from aicoderd.gguf_types import OUTPUT_TYPES
from aicoderd.ollama.client import Client
from aicoderd.ollama.names import Name
from aicoderd.sources.feedback_file import FeedbackRecord
from aicoderd.training import runtime
from aicoderd.training.corpus import CorpusSplits, load_corpus
from aicoderd.training.pretrain import Hooks

if TYPE_CHECKING:
    from aicoderd.config import Settings

REPORT = "report.json"
PINNED_FEEDBACK = "feedback.jsonl"
ADAPTER_GGUF = "adapter.gguf"
Say = Callable[[str], None]


@dataclass
class Request:
    source: str  # NAME[:TAG] in Ollama, PATH.gguf or an HF directory
    corpus: Path
    out: Path
    version: str
    feedback: list[FeedbackRecord]
    deploy: bool = True


@dataclass
class Prepared:
    source: Source
    base: Base
    corpus: CorpusSplits
    feedback: list[FeedbackRecord]


def prepare_run(req: Request, settings: Settings, client: Client | None, say: Say) -> Prepared:
    """The source resolved, the corpus read, the tokenizer proved."""
    req.out.mkdir(parents=True, exist_ok=True)
    feedback = pin_feedback(req.out, req.feedback)
    source = resolve(req.source, client, settings.adapt.ollama_models)
    corpus = load_corpus(req.corpus)
    say(f"checking {source.label}'s tokenizer against llama.cpp")
    base = prepare(source, corpus.eval + corpus.train, settings.export.type)
    return Prepared(source, base, corpus, feedback)


def train_phase(
    p: Prepared, req: Request, settings: Settings, hooks: Hooks
) -> tuple[Any, dict[str, Any]]:
    """The base with its LoRA trained (or resumed) in ``req.out``, and the run's metrics."""
    cfg = settings.adapt
    rt = runtime.detect(settings.training.device)
    model = lora.attach(load_model(p.source).to(rt.device), cfg)
    context = context_of(model, settings)
    blocks, fim_documents = data.corpus_blocks(
        p.base, p.corpus.train, context, cfg.fim_rate, cfg.seed
    )
    rows = data.feedback_rows(p.base, p.feedback, context)
    inputs = data.TrainingData(blocks, rows, fim_documents)
    metrics = lora.train(model, inputs, req.out, cfg, rt, p.base.eos, hooks)
    metrics |= {"fim_documents": fim_documents, "feedback_examples": len(rows)}
    runtime.finish(rt)
    return model, metrics


def context_of(model: Any, settings: Settings) -> int:
    return min(settings.adapt.context_length, int(model.config.max_position_embeddings))


def adapt(
    req: Request, settings: Settings, client: Client | None, hooks: Hooks, say: Say
) -> dict[str, Any]:
    """Train, gate, export and deploy; the report (also written as ``report.json``)."""
    p = prepare_run(req, settings, client, say)
    model, metrics = train_phase(p, req, settings, hooks)
    return finish(p, model, metrics, req, settings, client, say)


def finish(
    p: Prepared,
    model: Any,
    metrics: dict[str, Any],
    req: Request,
    settings: Settings,
    client: Client | None,
    say: Say,
) -> dict[str, Any]:
    """After training: the gate, the GGUFs, the deploy, the report."""
    cfg = settings.adapt
    result: dict[str, Any] = {
        "source": p.source.label,
        "version": req.version,
        "architecture": p.source.architecture,
        "fim_tokens": p.base.fim.__dict__ if p.base.fim else None,
        "tokenizer_parity": p.base.parity.samples if p.base.parity else None,
        "training": {k: v for k, v in metrics.items() if k != "history"},
        "paths": {"out": str(req.out), "lora": str(req.out / lora.ADAPTER_DIR)},
    }
    if metrics["stopped"] == "cancelled":
        return _report(req, result | {"stopped": "cancelled"})
    say("gate: the adapted model against the base on the eval split")
    rt = runtime.detect(settings.training.device)
    verdict = gate.compare(model, p.base, p.corpus, rt, context_of(model, settings), cfg)
    result |= {"base": verdict["base"], "adapted": verdict["adapted"]}
    result["gate"] = {"passed": verdict["passed"], "reason": verdict["reason"]}
    if not verdict["passed"]:
        say(f"the gate refused the adapted model: {verdict['reason']}")
        return _report(req, result)
    return _report(req, _ship(p, model, metrics, req, settings, client, say, result))


def _ship(
    p: Prepared,
    model: Any,
    metrics: dict[str, Any],
    req: Request,
    settings: Settings,
    client: Client | None,
    say: Say,
    result: dict[str, Any],
) -> dict[str, Any]:
    """The adapter and/or merged GGUF, each checked, and the deploy (adapter refused: merged)."""
    cfg = settings.adapt
    name = adapt_deploy.target(p.source.ollama.name if p.source.ollama else _stem(p), cfg.suffix)
    deploying = req.deploy and p.source.ollama is not None and client is not None
    mode = cfg.mode
    if mode == "adapter" and p.source.gguf is None:
        say("an adapter GGUF needs a GGUF base (an Ollama model or a .gguf file): merging")
        mode = "merged"
    if mode == "adapter":
        result["paths"]["adapter_gguf"] = str(_adapter_gguf(model, p, req, settings, say))
        if deploying:
            try:
                result["deployed"] = _deploy_adapter(p, req, name, client, say)
            except OllamaUnavailable:
                raise  # not a refusal: Ollama is away
            except OllamaError as exc:
                say(adapt_deploy.refused(exc))
                result["adapter_refused"] = str(exc)
                mode = "merged"
    if mode == "merged":
        say("merging the LoRA and exporting with the base's vocabulary")
        gguf_name = name.model
        built = merged.export(model, p.base, req.out, gguf_name, req.version, metrics, settings)
        result["paths"]["merged_gguf"] = built["gguf"]
        result["export"] = {k: v for k, v in built.items() if k not in ("gguf", "path")}
        if deploying:
            assert client is not None and p.source.ollama is not None
            say(f"deploying {name.base} beside {p.source.ollama.name}")
            gguf = Path(built["gguf"])
            result["deployed"] = adapt_deploy.merged(
                client, gguf, p.source.ollama, name, req.version, settings
            )
    return result


def _deploy_adapter(
    p: Prepared, req: Request, name: Name, client: Client | None, say: Say
) -> dict[str, Any]:
    assert client is not None and p.source.ollama is not None
    say(f"creating {name.base} from {p.source.ollama.name} with the adapter")
    gguf = Path(req.out / ADAPTER_GGUF)
    return adapt_deploy.adapter(
        client, gguf, p.source.ollama, name, req.version, lambda m: say(str(m.get("status")))
    )


def _adapter_gguf(model: Any, p: Prepared, req: Request, settings: Settings, say: Say) -> Path:
    """The GGUF LoRA, kept only once llama.cpp (base GGUF + adapter) matches PEFT in PyTorch."""
    assert p.source.gguf is not None
    say("writing the adapter GGUF and checking it in llama.cpp")
    out = req.out / ADAPTER_GGUF
    staging = out.with_name(f".{out.name}.unverified")
    adapter.write(model, settings.adapt.alpha, staging, f"{p.source.label} + LoRA")
    kind = p.base.out_type
    checked = "f32" if OUTPUT_TYPES[kind].lossless else kind  # the weights are the file's own
    e = settings.export
    limits = Limits(e.lossless_kl, e.quantized_kl, e.quantized_top1, dict(e.per_type))
    ref = Reference(model, p.base.encode_prompt, lora_path=staging)
    report = verify(p.source.gguf, req.out, checked, limits, reference=ref).to_dict()
    try:
        settle(staging, out, report)
    finally:
        staging.unlink(missing_ok=True)
    return out


def _stem(p: Prepared) -> str:
    path = p.source.gguf or p.source.hf_dir
    assert path is not None
    return path.stem.lower().replace("_", "-") or "model"


def pin_feedback(out: Path, records: list[FeedbackRecord]) -> list[FeedbackRecord]:
    """The feedback a run started with, written once into ``out``; read back on resume."""
    path = out / PINNED_FEEDBACK
    if path.exists():
        from aicoderd.training.preferences import read_records

        pinned, _ = read_records([path])
        return pinned
    lines = [r.model_dump_json(by_alias=True) for r in records]
    atomic_write(path, "".join(f"{line}\n" for line in lines).encode())
    return records


def _report(req: Request, result: dict[str, Any]) -> dict[str, Any]:
    result["paths"]["report"] = str(req.out / REPORT)
    atomic_write(req.out / REPORT, (json.dumps(result, indent=2, default=str) + "\n").encode())
    return result
