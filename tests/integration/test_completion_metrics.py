"""The completion metrics on a tiny model trained here on the CPU, end to end through the CLI:
a memorised file's lines are completed (next line after pretraining, infilling after a
finetune on editor records in the fill-in-the-middle layout), random text's are not; the GGUF
measured in llama.cpp gives the PyTorch figures; the gate refuses a model whose infilling
drops and says why.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from aicoderd.cli.main import main
from aicoderd.store import Store
from aicoderd.training import completion

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FILE = """def clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


def mean(values):
    total = 0
    for v in values:
        total += v
    return total / len(values)
"""
KEYS = set(completion.KEYS)


def corpus(root: Path, eval_texts: list[str], copies: int = 64) -> Path:
    """The file under distinct headers (so each copy is its own document) to memorise."""
    import datasets

    texts = [f"# module {i}\n{FILE}" for i in range(copies)] + eval_texts
    split = ["train"] * copies + ["eval"] * len(eval_texts)
    root.mkdir(parents=True)
    datasets.Dataset.from_dict({"text": texts, "split": split}).save_to_disk(str(root / "dataset"))
    (root / "manifest.json").write_text(json.dumps({"snapshot": f"snap-{root.name}"}))
    return root


def noise(seed: int) -> str:
    rng = random.Random(seed)
    chars = "abcdefghijklmnopqrstuvwxyz(){}=+:. "
    lines = ("".join(rng.choice(chars) for _ in range(rng.randint(12, 40))) for _ in range(40))
    return "\n".join(lines) + "\n"


def infill_records(text: str) -> list[str]:
    """An editor's accepted completion of every line of ``text``, with the cursor's context."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        prefix = "\n".join(lines[:i]) + ("\n" if i else "")
        suffix = "\n" + "\n".join(lines[i + 1 :])
        record = {
            "schema": 1,
            "id": str(uuid.uuid4()),
            "time": "2026-01-02T03:04:05Z",
            "model": "aicoder:latest",
            "prompt": prefix,
            "suggestion": line,
            "verdict": "accepted",
            "prefix": prefix,
            "suffix": suffix,
            "source": "continue",
        }
        out.append(json.dumps(record))
    return out


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.memorised_text = f"# module 999\n{FILE}"
        self.memorised = corpus(root / "memorised", [self.memorised_text])
        self.random = corpus(root / "random", [noise(1), noise(2)])
        self.config = root / "config.yaml"
        training = {
            "preset": "tiny",
            "batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_steps": 5,
            "max_steps": 100,
            "eval_every": 100,
            "checkpoint_every": 100,
            "finetune_steps": 60,
            "finetune_learning_rate": 2e-3,
            "finetune_batch_size": 8,
            "gate_tolerance": 1.0,  # the loss never refuses here: the infilling decides
            "gate_infill_margin": 0.05,
            "device": "cpu",
        }
        self.config.write_text(
            yaml.safe_dump({"data_dir": str(root / "data"), "training": training})
        )

    def cli(self, *args: str) -> tuple[int, str]:
        code, out, err = self.run(*args)
        return code, out + err

    def run(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), *args])
        return code, out.getvalue(), err.getvalue()

    def eval(self, model: Path, corpus_dir: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        """``--json eval``: the report is stdout (llama.cpp may log on stderr)."""
        args = ("--json", "eval", str(model), "--corpus", str(corpus_dir), *extra)
        code, out, err = self.run(*args)
        assert code in (0, 1), out + err
        return code, json.loads(out)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    e = Env(tmp_path_factory.mktemp("completion"))
    base, tuned = e.root / "base", e.root / "tuned"
    code, out = e.cli("train", "--corpus", str(e.memorised), "--out", str(base), "--json")
    assert code == 0, out
    feedback = e.root / "editor.jsonl"
    feedback.write_text("\n".join(infill_records(e.memorised_text)) + "\n")
    code, out = e.cli(
        "finetune", "--base", str(base), "--feedback", str(feedback), "--out", str(tuned),
        "--corpus", str(e.memorised), "--json",
    )  # fmt: skip
    assert code == 0, out
    return e


def test_a_memorised_file_is_completed_and_random_text_is_not(env: Env) -> None:
    _, base = env.eval(env.root / "base", env.memorised)
    _, tuned = env.eval(env.root / "tuned", env.memorised)
    assert set(base) >= KEYS and set(tuned) >= KEYS
    assert base["completion_cases"] == tuned["completion_cases"] == 12  # the non-blank lines
    # Pretraining memorised the file left to right; the finetune on editor records taught it
    # to fill a line in, in the layout the evaluation (and Ollama's template) uses.
    assert base["next_line_exact_match"] >= 0.7
    assert tuned["infill_exact_match"] >= 0.8
    assert tuned["infill_exact_match"] > base["infill_exact_match"]
    # It beats the compressors on what it memorised.
    assert base["bits_per_byte"] < base["xz_bits_per_byte"]
    assert base["bits_per_byte"] < base["zstd_bits_per_byte"]
    _, rand = env.eval(env.root / "tuned", env.random)
    assert rand["completion_cases"] == 80
    assert rand["infill_exact_match"] <= 0.05 and rand["next_line_exact_match"] <= 0.05
    assert rand["bits_per_byte"] > rand["xz_bits_per_byte"]
    # metrics.json and model_evals carry the same names.
    metrics = json.loads((env.root / "tuned" / "metrics.json").read_text())
    assert metrics["infill_exact_match"] == rand["infill_exact_match"]  # the latest evaluation
    store = Store(env.root / "data" / "state.db")
    try:
        row = store.evals.latest(str((env.root / "tuned").absolute()))
    finally:
        store.close()
    assert row is not None and set(row["metrics"]) >= KEYS


def test_the_gguf_in_llama_cpp_gives_the_pytorch_figures(env: Env) -> None:
    gguf = env.root / "tuned.gguf"
    code, out = env.cli(
        "--json", "export", str(env.root / "tuned"), "-o", str(gguf), "--type", "f32"
    )
    assert code == 0, out
    _, torch_figures = env.eval(env.root / "tuned", env.memorised)
    _, deployed = env.eval(gguf, env.memorised)
    assert deployed["backend"] == "llama.cpp" and torch_figures["backend"] == "pytorch"
    for key in ("infill_exact_match", "next_line_exact_match", "completion_cases"):
        assert deployed[key] == torch_figures[key], key
    assert deployed["bits_per_byte"] == pytest.approx(torch_figures["bits_per_byte"], rel=1e-3)
    assert deployed["xz_bits_per_byte"] == torch_figures["xz_bits_per_byte"]


def test_the_gate_refuses_a_model_whose_infilling_drops(env: Env) -> None:
    base, tuned = env.root / "base", env.root / "tuned"
    code, gated = env.eval(base, env.memorised, "--against", str(tuned))
    assert code == 1 and gated["promote"] is False
    assert "infill exact match" in gated["reason"] and " < " in gated["reason"]
    assert gated["against"]["infill_exact_match"] >= 0.7
    verdict = json.loads((base / "metrics.json").read_text())
    assert verdict["gate"] == "refused" and verdict["gate_reason"] == gated["reason"]
    assert verdict["against_infill_exact_match"] == gated["against"]["infill_exact_match"]
    code, gated = env.eval(tuned, env.memorised, "--against", str(base))
    assert code == 0 and gated["promote"] is True
