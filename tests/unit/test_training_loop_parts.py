"""The loop's newer parts, each on its own: the chunked loss against the plain one (values and
gradients), passes that slice a micro-batch, the wall-time plan, and the spec a resumed run
keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from aicoderd.config import TrainingConfig
from aicoderd.errors import TrainingError
from aicoderd.training import loss as chunked
from aicoderd.training import plan as planning
from aicoderd.training import runtime, shapes, spec


def _model(vocab: int = 1000) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(shapes.llama_config(shapes.Shape(256, 768, 2, 4, vocab, 64), vocab, 0))


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def test_chunked_loss_matches_the_plain_loss_in_value_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chunked, "CHUNK_ROWS", 50)  # 3 x 64 rows: four chunks, a ragged last
    model = _model()
    x = torch.randint(0, 1000, (3, 64))
    plain = model(input_ids=x, labels=x).loss
    plain.backward()
    expected = _grads(model)
    ours = chunked.CausalLMLoss(model)(x)
    ours.backward()
    got = _grads(model)
    assert float(ours) == pytest.approx(float(plain), rel=1e-6)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_chunked_loss_skips_ignored_targets_and_computes_no_gradients_without_grad() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(30, 16, requires_grad=True)
    targets = torch.randint(0, 30, (40,))
    targets[::3] = chunked.IGNORE
    plain = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, ignore_index=-100)
    ours = chunked.linear_cross_entropy(hidden, weight, targets)
    torch.testing.assert_close(ours, plain)
    g_plain = torch.autograd.grad(plain, (hidden, weight))
    g_ours = torch.autograd.grad(ours, (hidden, weight))
    for a, b in zip(g_ours, g_plain, strict=True):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        assert not chunked.linear_cross_entropy(hidden, weight, targets).requires_grad


def test_under_bf16_autocast_the_chunked_loss_follows_the_plain_one() -> None:
    """The CUDA path's dtype handling, exercised with the CPU's bf16 autocast."""
    model = _model()
    x = torch.randint(0, 1000, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(input_ids=x, labels=x).loss
        ours = chunked.CausalLMLoss(model)(x)
    plain.backward()
    expected = _grads(model)
    ours.backward()
    got = _grads(model)
    assert ours.dtype == torch.float32
    assert float(ours) == pytest.approx(float(plain), rel=1e-2)
    for name, grad in expected.items():
        assert got[name].dtype == grad.dtype == torch.float32, name
        cosine = torch.nn.functional.cosine_similarity(got[name].flatten(), grad.flatten(), dim=0)
        assert float(cosine) > 0.99, name


def test_a_step_in_slices_has_the_gradients_of_the_whole_micro_batch() -> None:
    model = _model()
    loss_of = chunked.CausalLMLoss(model)
    x = torch.randint(0, 1000, (4, 64))
    loss_of(x).backward()
    whole = _grads(model)
    for part in (x[:1], x[1:]):  # uneven slices, each weighted by its share of the rows
        (loss_of(part) * (len(part) / len(x))).backward()
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_cpu_passes_hold_a_bounded_activation_memory_and_cuda_passes_are_whole() -> None:
    cpu = runtime.Runtime(torch.device("cpu"), "fp32")
    cuda = runtime.Runtime(torch.device("cuda", 0), "bf16")
    per_token = {
        name: shapes.activation_bytes_per_token(s.hidden, s.intermediate, s.layers)
        for name, s in shapes.PRESETS.items()
    }
    assert runtime.rows_per_pass(cpu, None, 16, 512, per_token["small"]) == 1
    assert runtime.rows_per_pass(cpu, None, 16, 128, per_token["tiny"]) == 16
    assert runtime.rows_per_pass(cpu, None, 16, 1024, per_token["base"]) == 1  # at least one
    assert runtime.rows_per_pass(cpu, 2048, 16, 512, per_token["small"]) == 4
    assert runtime.rows_per_pass(cuda, None, 16, 512, per_token["small"]) == 16
    assert runtime.rows_per_pass(cuda, 4096, 16, 512, per_token["small"]) == 8


def test_a_step_bounded_plan_is_fixed_before_the_first_step() -> None:
    cfg = TrainingConfig(max_steps=500, warmup_steps=100, eval_every=200)
    plan = planning.new(cfg, tokens_per_step=1000)
    assert (plan.total, plan.warmup, plan.bound, plan.fixed) == (500, 50, "max_steps", True)
    by_tokens = planning.new(TrainingConfig(max_steps=500, max_tokens=20_500), 1000)
    assert (by_tokens.total, by_tokens.bound) == (21, "max_tokens")


def test_a_time_bounded_plan_ends_its_schedule_with_the_budget() -> None:
    cfg = TrainingConfig(max_steps=10_000, warmup_steps=100, max_wall_seconds=300, eval_every=50)
    plan = planning.new(cfg, tokens_per_step=1000)
    assert not plan.fixed and plan.warmup is None and plan.budget_seconds == 300
    planning.choose_warmup(plan, cfg, first_step=1.0, remaining=298.0)
    assert plan.warmup == 29  # ~298 steps at the first step's pace: a tenth of them
    # At the end of the warmup: 30 s spent, 0.5 s a step, evaluations of 2 s each.
    planning.fix_total(plan, cfg, 29, step_seconds=0.5, remaining=270.0, eval_seconds=2.0)
    assert plan.fixed and plan.bound == "max_wall_seconds" and plan.fixed_at_step == 29
    # Evaluations fit in 5 % of the budget (7 of 2 s): every ceil(565 / 7) = 81 steps.
    assert plan.eval_every == 81
    evals = (plan.total - 1) // plan.eval_every + 1
    assert evals * 2.0 <= planning.EVAL_SHARE * 300
    assert (plan.total - 29) * 0.5 + evals * 2.0 <= 270.0 < (plan.total - 28) * 0.5 + evals * 2.0
    factors = [plan.lr_factor(s, 0.1) for s in range(plan.total + 1)]
    assert max(factors) == pytest.approx(1.0) and factors[28] == pytest.approx(1.0)
    assert factors[plan.total] == pytest.approx(0.1)  # the floor when the budget ends
    assert factors[plan.total - 1] == pytest.approx(0.1, abs=1e-4)
    # A slow first step: the warmup still spans the steps the total is fixed from.
    slow = planning.new(cfg, 1000)
    planning.choose_warmup(slow, cfg, first_step=10.0, remaining=100.0)
    assert slow.warmup == planning.MEASURED
    # max_steps still caps a generous budget.
    short = planning.new(cfg.model_copy(update={"max_steps": 100}), 1000)
    planning.choose_warmup(short, cfg, first_step=0.1, remaining=300.0)
    planning.fix_total(short, cfg, short.warmup or 0, 0.1, 290.0, 0.5)
    assert (short.total, short.bound) == (100, "max_steps")
    assert not short.over_budget(329.0) and short.over_budget(330.0)


def test_a_resumed_run_keeps_its_spec_and_reports_what_changed(tmp_path: Path) -> None:
    first = TrainingConfig(preset="tiny", max_steps=50, learning_rate=3e-3, threads=1)
    spec.write(tmp_path, first, shape={"hidden": 256})
    later = first.model_copy(update={"max_steps": 80, "learning_rate": 1e-2, "threads": 2})
    later = later.model_copy(update={"finetune_steps": 7})
    warnings: list[str] = []
    cfg = spec.resume(tmp_path, later, warnings.append)
    assert (cfg.max_steps, cfg.learning_rate) == (50, 3e-3)  # what the run started with
    assert (cfg.threads, cfg.finetune_steps) == (2, 7)  # how it runs; another stage's key
    assert len(warnings) == 1
    assert "learning_rate 0.01 (run: 0.003), max_steps 80 (run: 50)" in warnings[0]
    assert spec.SPEC in warnings[0]
    assert spec.resume(tmp_path, first, warnings.append) == first and len(warnings) == 1
    (tmp_path / spec.SPEC).write_text("{not json")
    with pytest.raises(TrainingError, match="cannot read"):
        spec.resume(tmp_path, first, warnings.append)
    (tmp_path / spec.SPEC).unlink()
    assert spec.resume(tmp_path, later, warnings.append) == later
    assert "missing: resuming with the current configuration" in warnings[-1]
