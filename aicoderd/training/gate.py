"""The evaluation gate: eval loss on the fixed held-out split, the completion metrics
(:mod:`aicoderd.training.completion`), and, when feedback exists, how much likelier the model
finds accepted suggestions than rejected ones.

Two models trained on different corpus snapshots have different tokenizers, so their per-token
losses are not comparable; the gate compares the loss per *byte* of the same eval text (for
one tokenizer the two rank identically). A candidate is promoted when its loss per byte ≤ the
current model's * (1 + tolerance) *and* its single-line infilling exact match (on the same
cases) ≥ the current model's - margin. Every evaluation is recorded in ``model_evals``, and
the figures with the verdict in the candidate's ``metrics.json`` (the export copies them into
the GGUF, where ``aicoder models`` reads them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.store import Store
from aicoderd.training import completion, likelihood, report, runtime
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.corpus import load_corpus
from aicoderd.training.preferences import FeedbackSet

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

NO_CURRENT = "no current model"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


@dataclass(frozen=True)
class Outcome:
    """A candidate's evaluation, and the current model's with the decision when there is one."""

    result: dict[str, Any]
    against: dict[str, Any] | None = None
    decision: Decision | None = None
    note: str = NO_CURRENT  # why there is no decision

    @property
    def passed(self) -> bool:
        return self.decision.promoted if self.decision else self.note == NO_CURRENT

    @property
    def reason(self) -> str:
        return self.decision.reason if self.decision else self.note

    def verdict(self) -> dict[str, Any]:
        """The verdict as flat fields beside the model's own figures."""
        out: dict[str, Any] = {"gate": "ungated", "gate_reason": self.reason}
        if self.decision is not None and self.against is not None:
            out["gate"] = "passed" if self.decision.promoted else "refused"
            out["against_eval_loss_per_byte"] = self.against.get("eval_loss_per_byte")
            out["against_infill_exact_match"] = self.against.get("infill_exact_match")
        return out


def load_model(model_dir: Path, device: torch.device) -> tuple[Any, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
        model.to(device)  # type: ignore[arg-type]  # transformers' decorated to()
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the model in {model_dir}: {exc}") from exc
    return model, tokenization.load(model_dir)


def evaluate(
    model_dir: Path,
    corpus_dir: Path,
    feedback: FeedbackSet | None,
    *,
    device: str = "auto",
    cases: int = TrainingConfig().completion_cases,
) -> dict[str, Any]:
    """Eval loss (per token and per byte), the completion metrics and the feedback margin of
    one model, in PyTorch."""
    rt = runtime.detect(device)
    model, tok = load_model(model_dir, rt.device)
    backend = completion.TorchBackend(model, tok, rt.device, rt.autocast)
    out: dict[str, Any] = {"model": str(model_dir.absolute()), "backend": "pytorch"}
    out |= completion.evaluate(backend, load_corpus(corpus_dir), cases=cases)
    if feedback is not None and feedback.chosen and feedback.rejected:
        good = likelihood.mean_logprob(model, tok, feedback.chosen, rt.device)
        bad = likelihood.mean_logprob(model, tok, feedback.rejected, rt.device)
        out |= {"accepted_logprob": good, "rejected_logprob": bad, "feedback_margin": good - bad}
    return out


def run(
    model: Path,
    against: Path | None,
    corpus: Path,
    feedback: FeedbackSet | None,
    cfg: TrainingConfig,
) -> Outcome:
    """Evaluate ``model`` and, unless it is the same model, ``against``, on one corpus."""
    result = evaluate(model, corpus, feedback, device=cfg.device, cases=cfg.completion_cases)
    if against is None:
        return Outcome(result)
    if against.resolve() == model.resolve():
        return Outcome(result, note="same model")
    other = evaluate(against, corpus, feedback, device=cfg.device, cases=cfg.completion_cases)
    return Outcome(result, other, decide(result, other, cfg.gate_tolerance, cfg.gate_infill_margin))


def record(
    outcome: Outcome, model: Path, state_db: Path, cfg: TrainingConfig, job_id: int | None = None
) -> None:
    """A ``model_evals`` row, and the figures with the verdict in the model's metrics.json."""
    d = outcome.decision
    store = Store(state_db)
    try:
        store.evals.record(
            outcome.result, outcome.against, d.promoted if d else None, cfg.gate_tolerance, job_id
        )
    finally:
        store.close()
    figures = summary(outcome.result) | outcome.verdict()
    report.write_metrics(model, report.read_metrics(model) | figures)


def decide(
    candidate: dict[str, Any], current: dict[str, Any], tolerance: float, infill_margin: float
) -> Decision:
    """Promote when the candidate's loss per byte ≤ the current one's * (1 + tolerance) and its
    infilling exact match ≥ the current one's - margin (a figure missing on either side, as in
    a report from before the metric existed, leaves that half out)."""
    cand, cur = candidate["eval_loss_per_byte"], current["eval_loss_per_byte"]
    limit = cur * (1 + tolerance)
    loss_ok = cand <= limit
    sign = "<=" if loss_ok else ">"
    reasons = [f"eval loss/byte {cand:.4f} {sign} {limit:.4f} (current {cur:.4f})"]
    infill_ok = True
    fill, held = candidate.get("infill_exact_match"), current.get("infill_exact_match")
    if isinstance(fill, float) and isinstance(held, float):
        floor = held - infill_margin
        infill_ok = fill >= floor - 1e-12  # a margin of 0 admits an equal score
        sign = ">=" if infill_ok else "<"
        reasons.append(
            f"infill exact match {fill:.3f} {sign} {max(floor, 0.0):.3f} (current {held:.3f})"
        )
    return Decision(loss_ok and infill_ok, "; ".join(reasons))


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures of an evaluation that metrics.json, the GGUF and the status carry."""
    keys = ("eval_loss_per_byte", *completion.KEYS, "completion_seconds")
    return {k: result[k] for k in keys if k in result}
