"""The parity check: llama.cpp (llama-cpp-python) must tokenize exactly as the HF tokenizer and
compute the same next-token distribution as PyTorch, on fixed code prompts.

Lossless types (F32/F16/BF16) are held to a strict limit on the mean next-token KL over all
prompt positions (the statistic llama.cpp's own ``--kl-divergence`` reports; the worst position
is reported too), against a reference whose matrices are rounded to the exported type; quantized
types are held to configurable limits on the mean KL and on top-1 agreement. A GGUF that fails
is never deployed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aicoderd.errors import ExportError
from aicoderd.export import inference
from aicoderd.gguf_types import OUTPUT_TYPES
from aicoderd.training import fim, prompt

# Code in several languages, whitespace runs, digits, and the prompt format's special tokens.
PROMPTS = [
    "def binary_search(items, target):\n    lo, hi = 0, len(items) - 1\n    while lo <= hi:\n",
    "class LRUCache:\n\tdef __init__(self, capacity: int) -> None:\n\t\tself.cap = capacity\n",
    "function sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n\nconsole.log(sum([1,",
    '#include <string.h>\nint main(void) {\n    char buf[256] = "12345678";\n    return 0;\n}\n',
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 10000;\n-- done\n",
    prompt.review_prompt("for i in range(len(xs)):\n    print(xs[i])\n"),
    prompt.fim_prompt("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"),
]

# Requests rendered through the Ollama template: (prompt, suffix). With a suffix it takes the
# fill-in-the-middle branch (an editor's completion), without one the review branch.
TEMPLATE_REQUESTS = [
    ("def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"),
    ("for i in range(len(xs)):\n    print(xs[i])\n", ""),
]


@dataclass
class Limits:
    """Pass limits. ``lossless_kl`` bounds the mean KL for F32/F16/BF16; the others
    bound quantized types (per-type overrides in ``per_type``: {"q4_0": {"kl": 0.05}})."""

    lossless_kl: float = 1e-4
    quantized_kl: float = 0.05
    quantized_top1: float = 0.85
    per_type: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_type(self, out_type: str) -> tuple[float, float]:
        over = self.per_type.get(out_type, {})
        return over.get("kl", self.quantized_kl), over.get("top1", self.quantized_top1)


@dataclass
class Reference:
    """What the GGUF is compared with when it is not a model directory as saved: a model in
    memory (its weights as exported), its tokenizer (text → ids with the special tokens it
    adds), and a LoRA adapter GGUF llama.cpp applies on the file."""

    model: Any
    encode: Callable[[str], list[int]]
    lora_path: Path | None = None


@dataclass
class Report:
    gguf: str
    type: str
    passed: bool
    tokens_identical: bool
    # Ollama's rendered prompts give the training ids in llama.cpp (None: not our template)
    template_identical: bool | None
    prompts: int
    positions: int
    kl_mean: float
    kl_max: float
    top1_agreement: float
    max_abs_logit_diff: float
    limits: dict[str, float]
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kl(p_logits: npt.NDArray[np.float64], q_logits: npt.NDArray[np.float64]) -> Any:
    """KL(P‖Q) per row, P the reference (PyTorch)."""

    def log_softmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x = x - x.max(axis=-1, keepdims=True)
        out: npt.NDArray[np.float64] = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
        return out

    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def verify(
    gguf_path: Path,
    model_dir: Path,
    out_type: str,
    limits: Limits | None = None,
    prompts: list[str] | None = None,
    reference: Reference | None = None,
) -> Report:
    """Compare llama.cpp on ``gguf_path`` with PyTorch on ``model_dir`` (or ``reference``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    limits = limits or Limits()
    prompts = prompts or PROMPTS
    own_model = reference is None
    if reference is None:
        tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), local_files_only=True, dtype=torch.float32
        )
        reference = Reference(model, lambda p: list(tok(p, add_special_tokens=True)["input_ids"]))
    model = reference.model.eval()
    _round_like_export(model, out_type)
    context = int(model.config.max_position_embeddings)
    hf_ids = [reference.encode(p)[:context] for p in prompts]
    llm = inference.load(
        gguf_path,
        n_ctx=max(len(ids) for ids in hf_ids) + 8,
        logits_all=True,
        lora_path=reference.lora_path,
    )
    problems: list[str] = []
    kls: list[Any] = []
    top1: list[Any] = []
    max_diff = 0.0
    for text, ids in zip(prompts, hf_ids, strict=True):
        ll_ids = llm.tokenize(text.encode(), add_bos=True, special=True)[:context]
        if ll_ids != ids:
            problems.append(
                f"token ids differ on {text[:30]!r}: HF {ids[:12]}… llama.cpp {ll_ids[:12]}…"
            )
            continue
        with torch.no_grad():
            ref = model(torch.tensor([ids])).logits[0].double().numpy()
        llm.reset()
        llm.eval(ids)
        got = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        kls.append(_kl(ref, got))
        top1.append(ref.argmax(-1) == got.argmax(-1))
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
    # Our template is checked for our models; an adapted model keeps its base's own template.
    template = check_template(llm, tok) if own_model else None
    del llm
    report = _report(
        gguf_path, out_type, limits, prompts, kls, top1, max_diff, problems + (template or [])
    )
    report.template_identical = None if template is None else not template
    return report


def _round_like_export(model: Any, out_type: str) -> None:
    """Give the reference the weights the GGUF holds for F16/BF16: matrices rounded to that
    type, 1-D tensors kept in F32 as the converter keeps them. The check then measures the
    conversion and llama.cpp's arithmetic, not the rounding the user asked for."""
    import torch

    dtype = {"f16": torch.float16, "bf16": torch.bfloat16}.get(out_type)
    if dtype is None:
        return
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(module.weight.to(dtype).float())


def _report(
    gguf_path: Path,
    out_type: str,
    limits: Limits,
    prompts: list[str],
    kls: list[Any],
    top1: list[Any],
    max_diff: float,
    problems: list[str],
) -> Report:
    kl = np.concatenate(kls) if kls else np.array([np.inf])
    agree = float(np.concatenate(top1).mean()) if top1 else 0.0
    lossless = OUTPUT_TYPES[out_type].lossless if out_type in OUTPUT_TYPES else False
    if lossless:
        bound = {"kl_mean": limits.lossless_kl}
        if float(kl.mean()) > limits.lossless_kl:
            problems.append(f"mean KL {float(kl.mean()):.3g} exceeds {limits.lossless_kl:g}")
    else:
        kl_limit, top1_limit = limits.for_type(out_type)
        bound = {"kl_mean": kl_limit, "top1_min": top1_limit}
        if float(kl.mean()) > kl_limit:
            problems.append(f"mean KL {float(kl.mean()):.3g} exceeds {kl_limit:g}")
        if agree < top1_limit:
            problems.append(f"top-1 agreement {agree:.3f} is below {top1_limit:g}")
    return Report(
        gguf=str(gguf_path),
        type=out_type,
        passed=not problems,
        tokens_identical=len(kls) == len(prompts),
        template_identical=True,
        prompts=len(prompts),
        positions=int(kl.size) if kls else 0,
        kl_mean=float(kl.mean()),
        kl_max=float(kl.max()),
        top1_agreement=agree,
        max_abs_logit_diff=max_diff,
        limits=bound,
        problems=problems,
    )


def check_template(llm: Any, tok: Any) -> list[str]:
    """Each of :data:`TEMPLATE_REQUESTS` rendered through Ollama's template as Ollama renders
    it, then tokenized by llama.cpp as Ollama tokenizes it, must be the ids training laid out
    for the same request: the FIM branch as pretraining and finetuning encode its pieces, the
    review branch as finetuning encodes its prompt."""
    begin = list(tok("", add_special_tokens=True)["input_ids"])
    problems = []
    for text, suffix in TEMPLATE_REQUESTS:
        rendered = render_template(prompt.ollama_template(), text, suffix)
        if suffix:
            trained = fim.encode_pieces(tok, [prompt.FIM.layout(text, suffix)])[0]
        else:
            trained = tok.encode(prompt.review_prompt(text), add_special_tokens=False)
        served = llm.tokenize(rendered.encode(), add_bos=True, special=True)
        if served != begin + trained:
            branch = "fill-in-the-middle" if suffix else "review"
            problems.append(
                f"the Ollama template's {branch} branch: llama.cpp reads {served[:12]}…,"
                f" training laid out {(begin + trained)[:12]}…"
            )
    return problems


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


def render_template(template: str, prompt_text: str, suffix: str) -> str:
    """Ollama's rendering of our template, written independently of :mod:`prompt`'s builders:
    the Go template subset it uses (``if .Suffix`` / ``else`` / ``end``, ``.Prompt``,
    ``.Suffix``, and ``{{-`` / ``-}}`` trimming the whitespace beside an action). Anything
    else is an error, so a new template construct cannot pass unchecked."""
    values = {".Prompt": prompt_text, ".Suffix": suffix}
    out: list[str] = []
    showing = [True]  # per nested if: whether its current branch is rendered
    taken = [True]  # per nested if: whether its condition held
    pos, trim_next = 0, False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        text = text.lstrip() if trim_next else text
        text = text.rstrip() if m.group(1) else text
        if all(showing):
            out.append(text)
        action, trim_next, pos = m.group(2), bool(m.group(3)), m.end()
        if action.startswith("if "):
            cond = bool(values.get(action[3:].strip(), ""))
            showing.append(cond)
            taken.append(cond)
        elif action == "else" and len(showing) > 1:
            showing[-1] = not taken[-1]
        elif action == "end" and len(showing) > 1:
            showing.pop()
            taken.pop()
        elif action in values:
            if all(showing):
                out.append(values[action])
        else:
            raise ExportError(f"the template check does not know the action {{{{ {action} }}}}")
    tail = template[pos:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)
