"""How long a pretraining run is: its total optimizer steps, the warmup, the learning-rate
schedule and how often it evaluates and checkpoints.

A run bounded by ``max_steps`` or ``max_tokens`` knows all of it before the first step. A run
bounded by ``max_wall_seconds`` cannot, so it plans from measured time: the warmup length from
the first step's duration (before its optimizer step, so no learning rate changes), and the total
at the end of the warmup from the mean step time since, less the evaluations the budget has to
hold. The cosine schedule then reaches its floor when the budget ends, instead of being cut off
half-way down. The plan travels in every checkpoint, so a resumed run keeps it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from aicoderd.config import TrainingConfig
from aicoderd.training import data, optim

FORWARD_SHARE = 0.4  # an eval pass's time / a training pass's (forward only ~1/3, plus margin)
EVAL_SHARE = 0.05  # a time-bounded run spends at most this share of its budget evaluating
OVERRUN = 0.1  # the hard stop: budget * (1 + this), for steps slower than the plan measured
REVISIONS = 10  # a time-bounded run checks its pace this many times after fixing the total
SLACK = 0.02  # ...and cuts the total when the rest would overrun the budget by more than this
MEASURED = 5  # a time-bounded run's warmup is at least this long: the steps its plan times


@dataclass
class Plan:
    total: int  # optimizer steps
    bound: str  # the limit that set ``total``: max_steps, max_tokens or max_wall_seconds
    warmup: int | None  # linear warmup steps; None until the first step was timed
    eval_every: int
    checkpoint_every: int
    fixed: bool  # False while a time-bounded run still measures
    budget_seconds: float | None = None
    step_seconds: float | None = None  # the measured step time the total was fixed from
    fixed_at_step: int | None = None
    revised_at_step: int | None = None  # the last step the total was cut at (steps slowed down)

    def lr_factor(self, step: int, floor: float) -> float:
        """Linear warmup, then cosine to ``floor`` at ``total``."""
        return optim.lr_factor(step, warmup=self.warmup or 1, total=self.total, floor=floor)

    def over_budget(self, seconds: float) -> bool:
        """True once a time-bounded run overran its budget by more than ``OVERRUN``."""
        return self.budget_seconds is not None and seconds >= self.budget_seconds * (1 + OVERRUN)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Plan:
        return cls(**state)


def warmup_for(warmup_steps: int, total: int) -> int:
    """The configured warmup, at most a tenth of the run."""
    return min(warmup_steps, max(1, total // 10))


def new(cfg: TrainingConfig, tokens_per_step: int) -> Plan:
    """The plan before the first step: final unless the run is bounded by wall time."""
    cap = data.planned_steps(cfg.max_steps, cfg.max_tokens, tokens_per_step)
    bound = "max_tokens" if cap < cfg.max_steps else "max_steps"
    timed = cfg.max_wall_seconds is not None
    return Plan(
        total=cap,
        bound=bound,
        warmup=None if timed else warmup_for(cfg.warmup_steps, cap),
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        fixed=not timed,
        budget_seconds=cfg.max_wall_seconds,
    )


def choose_warmup(plan: Plan, cfg: TrainingConfig, first_step: float, remaining: float) -> None:
    """Set the warmup from the first step's time (the slowest: allocations happen in it, so
    the estimate of the run's length errs short and the warmup with it), and never shorter
    than the ``MEASURED`` steps whose median time fixes the total."""
    estimate = min(plan.total, max(1, int(remaining / max(first_step, 1e-6))))
    measured = min(MEASURED, max(1, estimate // 2))
    plan.warmup = max(warmup_for(cfg.warmup_steps, estimate), measured)


def eval_seconds(pass_seconds: float, passes: int) -> float:
    """An evaluation's expected time: ``passes`` forward passes, each a share of a training
    pass (forward only, no optimizer)."""
    return FORWARD_SHARE * pass_seconds * passes


def fix_total(
    plan: Plan,
    cfg: TrainingConfig,
    step: int,
    step_seconds: float,
    remaining: float,
    eval_seconds: float,
) -> None:
    """Fix the total so the remaining steps and evaluations end with the budget."""
    _fit(plan, cfg, step, step_seconds, remaining, eval_seconds)
    plan.step_seconds, plan.fixed_at_step, plan.fixed = step_seconds, step, True


def _fit(
    plan: Plan,
    cfg: TrainingConfig,
    step: int,
    step_seconds: float,
    remaining: float,
    eval_seconds: float,
) -> None:
    """Lower the total (never raise it) to what ``remaining`` seconds hold from ``step``.

    Intermediate evaluations are spaced so that all of them, the final one included, take at
    most ``EVAL_SHARE`` of the budget (a short run evaluates rarely, a long one as configured).
    """
    budget = plan.budget_seconds or remaining
    affordable = max(1, math.floor(EVAL_SHARE * budget / max(eval_seconds, 1e-6)))
    available = remaining - eval_seconds  # the final evaluation always runs
    total = step + max(1, math.floor(available / step_seconds))
    plan.eval_every = max(cfg.eval_every, math.ceil(total / affordable))
    between = (total - 1) // plan.eval_every - step // plan.eval_every  # still to come
    total = step + max(1, math.floor((available - between * eval_seconds) / step_seconds))
    if total < plan.total:
        plan.total, plan.bound = total, "max_wall_seconds"


def revise_due(plan: Plan, step: int) -> bool:
    """Whether a fixed time-bounded run checks its pace at ``step`` (ten times a run)."""
    if plan.budget_seconds is None or not plan.fixed or plan.fixed_at_step is None:
        return False
    every = max(1, (plan.total - plan.fixed_at_step) // REVISIONS)
    return step > plan.fixed_at_step and (step - plan.fixed_at_step) % every == 0


def revise(
    plan: Plan,
    cfg: TrainingConfig,
    step: int,
    step_seconds: float,
    remaining: float,
    eval_seconds: float,
) -> bool:
    """Cut the total when the steps left, at the recent pace, and the evaluations to come would
    overrun the budget (the machine got busier): the cosine still reaches its floor when the
    budget ends, a little sooner than planned, instead of being stopped half-way down. A run
    that got faster keeps its total (it ends early). True when the total was cut."""
    evals = (plan.total - 1) // plan.eval_every - step // plan.eval_every + 1
    needed = (plan.total - step) * step_seconds + evals * eval_seconds
    if needed <= remaining * (1 + SLACK):
        return False
    before = plan.total
    _fit(plan, cfg, step, step_seconds, remaining, eval_seconds)
    if plan.total < before:
        plan.revised_at_step = step
    return plan.total < before
