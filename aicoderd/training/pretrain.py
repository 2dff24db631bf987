"""Pretraining from scratch: a tokenizer trained on the corpus, a Llama model, and a plain
training loop meant to be read top to bottom (nanoGPT's shape).

The loop is ours rather than HF ``Trainer``: it is shorter than the configuration Trainer
would need for exact resume of the data position, per-step progress events and our stop
conditions, and the benchmark (benchmarks/train_throughput.py) measures it at least as fast.

Output directory::

    OUT/config.json, model.safetensors, generation_config.json   save_pretrained, at the end
    OUT/tokenizer.json, tokenizer_config.json, chat_template.jinja   written first
    OUT/metrics.json, loss.png                                      at the end
    OUT/checkpoints/step-NNNNNNNN.pt                                every checkpoint_every steps
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.training import data, optim, prompt, report, runtime, shapes, spec
from aicoderd.training import plan as planning
from aicoderd.training import tokenizer as tokenization
from aicoderd.training.checkpoint import Checkpoints
from aicoderd.training.corpus import load_corpus
from aicoderd.training.fim import Fim

if TYPE_CHECKING:
    import torch
    from transformers import LlamaConfig, PreTrainedTokenizerBase

CHECKPOINTS = "checkpoints"


def _ignore(_: Any) -> None:
    return None


@dataclass
class Hooks:
    """How a run talks to whoever started it (the CLI's progress bar, a daemon job)."""

    progress: Callable[[dict[str, Any]], None] = _ignore
    warn: Callable[[str], None] = _ignore
    should_stop: Callable[[], bool] = lambda: False  # checked every step: checkpoint and stop
    checkpoint_on_stop: bool = True  # False: a stopped run is discarded, so skip the checkpoint


class Phases:
    """Where a session's wall time went (metrics ``phases``), and when its first optimizer
    step ended."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = self._last = time.perf_counter()
        self.first_step: float | None = None

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self._last
        self._last = now
        if phase == "steps" and self.first_step is None:
            self.first_step = round(now - self.started, 3)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


@dataclass
class Progress:
    """What a checkpoint carries besides the tensors."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0  # training wall time over all sessions
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)


def pretrain(
    corpus_dir: Path,
    out_dir: Path,
    cfg: TrainingConfig,
    *,
    cache_dir: Path | None = None,
    resume: bool = False,
    hooks: Hooks | None = None,
) -> dict[str, Any]:
    """Train (or continue training) the model in ``out_dir``; its metrics, with ``stopped``
    saying why it ended (``cancelled`` leaves a checkpoint and no final model)."""
    import torch
    from transformers import LlamaForCausalLM

    from aicoderd.training.loss import CausalLMLoss

    hooks = hooks or Hooks()
    phases = Phases()
    ckpts = Checkpoints(out_dir / CHECKPOINTS, cfg.keep_checkpoints)
    if ckpts.steps() and not resume:
        raise TrainingError(f"{out_dir} holds checkpoints: pass --resume, or choose a new --out")
    state = ckpts.latest(hooks.warn) if resume else None
    if state is not None:
        cfg = spec.resume(out_dir, cfg, hooks.warn)  # a resumed run trains what it started
    rt = runtime.detect(cfg.device, cfg.threads)
    corpus = load_corpus(corpus_dir)
    phases.lap("corpus")
    tok, config = _tokenizer_and_model_config(out_dir, corpus.train, cfg, rt, resumed=bool(state))
    phases.lap("tokenizer")

    # Data: the token streams (cached per snapshot), cut into blocks of the context length.
    streams = data.token_streams(corpus, tok, cache_dir, Fim.from_config(cfg))
    snapshot = corpus.snapshot
    del corpus  # the texts are tokens now: hand their memory (and the tokenizer's) back
    runtime.release_memory()
    phases.lap("tokenize")
    context = int(config.max_position_embeddings)
    train_blocks = data.blocks(streams.train, context)
    eval_blocks = data.blocks(streams.eval, context)[: cfg.eval_batches * cfg.batch_size]
    sampler = data.BatchSampler(len(train_blocks), cfg.seed)
    per_step = cfg.batch_size * cfg.grad_accum_steps * rt.world  # sequences per optimizer step
    tokens_per_step = per_step * train_blocks.shape[1]
    per_token = shapes.activation_bytes_per_token(
        config.hidden_size, config.intermediate_size, config.num_hidden_layers
    )
    rows_per_pass = runtime.rows_per_pass(rt, cfg.pass_tokens, cfg.batch_size, context, per_token)
    step_passes = math.ceil(per_step // rt.world / rows_per_pass)
    eval_passes = math.ceil(len(eval_blocks) / rows_per_pass)
    plan = planning.new(cfg, tokens_per_step)

    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.to(rt.device)  # type: ignore[arg-type]  # transformers' decorated to()
    optimizer = optim.adamw(model, cfg.learning_rate, cfg.weight_decay, (cfg.beta1, cfg.beta2))
    run = Progress()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["data"])
        _set_rng(state["rng"])
        run = Progress(**state["progress"])
        plan = planning.Plan.from_state(state["plan"]) if "plan" in state else plan
    # The loss from the last hidden states in chunks (no full logits): what DDP and compile wrap.
    trained: torch.nn.Module = CausalLMLoss(model)
    if cfg.compile if cfg.compile is not None else rt.device.type == "cuda":
        trained = torch.compile(trained)  # type: ignore[assignment]
    if rt.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(trained)
    evaluate = functools.partial(evaluate_loss, CausalLMLoss(model), eval_blocks, rows_per_pass, rt)

    def checkpoint() -> None:
        if rt.main:
            ckpts.save(run.step, _state(model, optimizer, sampler, run, plan))

    phases.lap("model")

    # The loop: one optimizer step per iteration, eval and checkpoint every N steps. Time is
    # wall time, evaluations and checkpoints included; it adds up over resumed sessions.
    stopped = ""
    session_start, session_step, session_seconds = time.perf_counter(), run.step, run.seconds
    step_times: list[float] = []  # this session's steps, seconds each
    while run.step < plan.total:
        run.seconds = session_seconds + time.perf_counter() - session_start
        if not plan.fixed and plan.warmup is not None and run.step >= plan.warmup:
            # A time-bounded run at the end of its warmup: fix the total from the step time.
            typical = _agree_seconds(_typical(step_times), rt)
            eval_time = planning.eval_seconds(typical / step_passes, eval_passes)
            remaining = (plan.budget_seconds or 0.0) - run.seconds
            planning.fix_total(plan, cfg, run.step, typical, remaining, eval_time)
        elif planning.revise_due(plan, run.step):  # ...and later: is it still on time?
            recent = _agree_seconds(_typical(step_times[-2 * planning.MEASURED :]), rt)
            eval_time = planning.eval_seconds(recent / step_passes, eval_passes)
            remaining = (plan.budget_seconds or 0.0) - run.seconds
            planning.revise(plan, cfg, run.step, recent, remaining, eval_time)
        cancel, late = _agree([hooks.should_stop(), plan.over_budget(run.seconds)], rt)
        if cancel or late:
            stopped = "cancelled" if cancel else "max_wall_seconds"
            break
        t0 = time.perf_counter()
        model.train()
        rows = sampler.take(per_step)[rt.rank :: rt.world]
        passes = [rows[i : i + rows_per_pass] for i in range(0, len(rows), rows_per_pass)]
        loss_sum = 0.0
        for i, part in enumerate(passes):
            x = data.batch(train_blocks, part, rt.device)
            last = i == len(passes) - 1
            with _maybe_no_sync(trained, rt.distributed and not last), rt.autocast():
                loss = trained(x) * (len(part) / len(rows))  # the mean over the whole step
            loss.backward()
            loss_sum += float(loss.detach())
        if plan.warmup is None:  # a time-bounded run's first step: how long will it run?
            elapsed = _agree_seconds(time.perf_counter() - t0, rt)
            planning.choose_warmup(plan, cfg, elapsed, (plan.budget_seconds or 0.0) - run.seconds)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr = cfg.learning_rate * plan.lr_factor(run.step, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        step_times.append(time.perf_counter() - t0)
        phases.lap("steps")
        run.step += 1
        run.tokens += tokens_per_step
        run.train_losses.append((run.step, loss_sum))
        fields = _progress(run, plan, lr, loss_sum, step_times, tokens_per_step)
        if run.step % plan.eval_every == 0 or run.step == plan.total:
            run.eval_losses.append((run.step, evaluate()))
            fields["eval_loss"] = round(run.eval_losses[-1][1], 4)
            phases.lap("evaluations")
        if rt.main:
            hooks.progress(fields)
        if run.step % plan.checkpoint_every == 0 and run.step < plan.total:
            checkpoint()
            phases.lap("checkpoints")
    run.seconds = session_seconds + time.perf_counter() - session_start

    if stopped == "cancelled":
        if hooks.checkpoint_on_stop:
            checkpoint()
        runtime.finish(rt)
        return {"stopped": stopped, "step": run.step, "total": plan.total}
    if not run.eval_losses or run.eval_losses[-1][0] != run.step:
        run.eval_losses.append((run.step, evaluate()))
        phases.lap("evaluations")
    n_params = sum(p.numel() for p in model.parameters())
    metrics = _metrics(run, plan, stopped or plan.bound, corpus_dir, snapshot, n_params, rt)
    metrics["unigram_eval_loss"] = data.unigram_loss(streams.train, streams.eval, len(tok))
    metrics |= {"fim_rate": cfg.fim_rate, "fim_spm_rate": cfg.fim_spm_rate}
    session_steps = run.step - session_step
    metrics["tokens_per_s"] = _rate(session_steps * tokens_per_step, sum(step_times))
    if rt.main:
        model.save_pretrained(out_dir)
        report.plot_losses(out_dir, run.train_losses, run.eval_losses, f"{out_dir.name}")
        phases.lap("save")
        metrics["phases"] = phases.rounded()
        metrics["first_step_seconds"] = phases.first_step
        report.write_metrics(out_dir, metrics)
    runtime.finish(rt)
    return metrics


def _tokenizer_and_model_config(
    out_dir: Path, texts: list[str], cfg: TrainingConfig, rt: runtime.Runtime, *, resumed: bool
) -> tuple[PreTrainedTokenizerBase, LlamaConfig]:
    """A resumed run reuses what the first session wrote; a new one trains the tokenizer."""
    from transformers import LlamaConfig

    if not resumed and rt.main:
        shape = shapes.shape(cfg)
        tok = tokenization.build(texts, shape.vocab, cfg.pretokenizer)
        tok.model_max_length = shape.context
        eot = tokenization.token_id(tok, prompt.EOT)
        config = shapes.llama_config(shape, len(tok), eot)
        out_dir.mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(out_dir))
        config.save_pretrained(str(out_dir))
        spec.write(out_dir, cfg, shape=asdict(shape), vocab_size=len(tok), processes=rt.world)
    if rt.distributed:
        import torch

        torch.distributed.barrier()  # the other processes load what the first one wrote
    if resumed or not rt.main:
        return tokenization.load(out_dir), LlamaConfig.from_pretrained(
            str(out_dir), local_files_only=True
        )
    return tok, config


def evaluate_loss(
    loss_of: torch.nn.Module, blocks: data.Tokens, rows: int, rt: runtime.Runtime
) -> float:
    """Mean next-token loss (nats) over ``blocks``, ``rows`` sequences at a time."""
    import torch

    loss_of.eval()
    total, count = 0.0, 0
    with torch.no_grad(), rt.autocast():
        for start in range(0, len(blocks), rows):
            x = data.batch(blocks, list(range(start, min(start + rows, len(blocks)))), rt.device)
            predicted = x.shape[0] * (x.shape[1] - 1)
            total += float(loss_of(x)) * predicted
            count += predicted
    loss_of.train()
    return total / max(count, 1)


def _agree(flags: list[bool], rt: runtime.Runtime) -> list[bool]:
    """Under DDP every process must stop at the same step: a flag raised in any one holds."""
    if not rt.distributed:
        return flags
    import torch

    t = torch.tensor([int(f) for f in flags], device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _agree_seconds(seconds: float, rt: runtime.Runtime) -> float:
    """Under DDP the plan must be the same in every process: the slowest one's time holds."""
    if not rt.distributed:
        return seconds
    import torch

    t = torch.tensor([seconds], dtype=torch.float64, device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())


def _typical(step_times: list[float]) -> float:
    """A step's time: the median after the first (which pays for first-time allocations)."""
    later = sorted(step_times[1:]) or step_times
    return later[len(later) // 2]


def _maybe_no_sync(model: torch.nn.Module, skip: bool) -> Any:
    """Under DDP, gradients are all-reduced on the last pass of a step only."""
    import contextlib

    return model.no_sync() if skip else contextlib.nullcontext()  # type: ignore[operator]


def _progress(
    run: Progress,
    plan: planning.Plan,
    lr: float,
    loss: float,
    step_times: list[float],
    tokens_per_step: int,
) -> dict[str, Any]:
    """One step's progress event: raw numbers, without float noise."""
    per_step = sum(step_times) / len(step_times)
    return {
        "step": run.step,
        "total": plan.total,
        "loss": round(loss, 4),
        "lr": float(f"{lr:.4g}"),
        "tokens": run.tokens,
        "tokens_per_s": round(tokens_per_step / per_step, 1),
        "eta_s": round((plan.total - run.step) * per_step, 1),
    }


def _rate(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


def _state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: data.BatchSampler,
    run: Progress,
    plan: planning.Plan,
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "data": sampler.state_dict(),
        "rng": _get_rng(),
        "plan": plan.state_dict(),
        "progress": {
            "step": run.step,
            "tokens": run.tokens,
            "seconds": run.seconds,
            "train_losses": run.train_losses,
            "eval_losses": run.eval_losses,
        },
    }


def _get_rng() -> dict[str, Any]:
    import torch

    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _metrics(
    run: Progress,
    plan: planning.Plan,
    stopped: str,
    corpus_dir: Path,
    snapshot: str,
    parameters: int,
    rt: runtime.Runtime,
) -> dict[str, Any]:
    eval_loss = run.eval_losses[-1][1]
    tail = [loss for _, loss in run.train_losses[-20:]]
    return {
        "kind": "pretrain",
        "corpus_dir": str(corpus_dir.absolute()),
        "corpus_snapshot": snapshot,
        "steps": run.step,
        "total_steps": plan.total,
        "stopped": stopped,  # the limit that ended it: max_steps, max_tokens, max_wall_seconds
        "schedule_complete": run.step >= plan.total,  # the learning rate reached its floor
        "plan": plan.state_dict(),
        "tokens_seen": run.tokens,
        "wall_seconds": round(run.seconds, 3),
        "train_loss": sum(tail) / len(tail) if tail else None,
        "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50.0)),
        "parameters": parameters,
        "device": str(rt.device),
        "precision": rt.dtype_name,
        "history": {"train": run.train_losses, "eval": run.eval_losses},
    }
