"""The adapt gate: the base's own FIM tokens as the completion format, and the decision on loss
per byte and infilling exact match."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from aicoderd.adapt import gate
from aicoderd.adapt.base import Base, prepare
from aicoderd.adapt.source import resolve
from aicoderd.config import AdaptConfig
from tests.export.tiny import CODE

TEXTS = [CODE[i : i + 300] for i in range(0, 1200, 300)]


@pytest.fixture(scope="module")
def base(base_ggufs: dict[str, Path]) -> Base:
    return prepare(resolve(str(base_ggufs["qwen2-q8_0"]), None, None), TEXTS)


def test_the_format_speaks_in_the_base_s_own_tokens(base: Base) -> None:
    fmt = gate.completion_format(base)
    assert fmt.fim is not None
    ids = [base.hf_tokenizer.convert_tokens_to_ids(t) for t in (fmt.fim.prefix, fmt.fim.suffix)]
    assert base.fim is not None and ids == [base.fim.prefix, base.fim.suffix]
    eos = base.hf_tokenizer.convert_ids_to_tokens(base.eos)
    assert fmt.separator == eos and fmt.stop == (eos, fmt.fim.prefix)
    assert gate.completion_format(replace(base, fim=None)).fim is None


def _side(loss: float, infill: float | None) -> dict[str, float | None]:
    return {"eval_loss_per_byte": loss, "infill_exact_match": infill}


@pytest.mark.parametrize(
    ("before", "after", "margin", "passed"),
    [
        (_side(1.0, 0.20), _side(0.9, 0.25), 0.0, True),
        (_side(1.0, 0.20), _side(0.9, 0.20), 0.0, True),  # a tie keeps the base's skill
        (_side(1.0, 0.20), _side(0.9, 0.15), 0.0, False),  # lower loss, worse infilling
        (_side(1.0, 0.20), _side(0.9, 0.15), 0.05, True),
        (_side(1.0, 0.20), _side(1.0, 0.30), 0.0, False),  # no loss improvement
        (_side(1.0, None), _side(0.9, None), 0.0, True),  # a base without FIM tokens
    ],
)
def test_the_gate_needs_lower_loss_and_no_worse_infilling(
    before: dict[str, float], after: dict[str, float], margin: float, passed: bool
) -> None:
    verdict = gate.decide(before, after, AdaptConfig(gate_infill_margin=margin))
    assert verdict["passed"] is passed, verdict["reason"]
    assert ("infill exact match" in verdict["reason"]) is (before["infill_exact_match"] is not None)
