"""`aicoder train / eval / finetune` on a tiny model, on the CPU: the command run in this process,
except the one killed with SIGKILL, which is a real subprocess.

One uninterrupted 50-step run is shared by the module; the other tests compare against it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aicoderd.cli.main import main
from tests.training_corpus import feedback_line, make_corpus

STEPS = 50


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.corpus = make_corpus(root / "corpus")
        self.data_dir = root / "data"
        self.config = root / "config.yaml"
        training = {
            "preset": "tiny",
            "batch_size": 8,
            "learning_rate": 3e-3,
            "warmup_steps": 5,
            "max_steps": STEPS,
            "eval_every": 25,
            "eval_batches": 4,
            "checkpoint_every": 5,
            "keep_checkpoints": 3,
            "finetune_steps": 25,
            "finetune_learning_rate": 1e-3,
            "finetune_batch_size": 4,
        }
        self.config.write_text(
            yaml.safe_dump({"data_dir": str(self.data_dir), "training": training})
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AICODER_")}
        return env | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "aicoderd.cli.main", "--config", str(self.config), *args]

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``aicoder ARGS`` in this process (a subprocess pays seconds of imports each time)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(config or self.config), *args])
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def kill_during_training(self, out: Path, kill_at: int) -> None:
        """``aicoder train`` in a subprocess, SIGKILLed once it reported step ``kill_at``."""
        proc = subprocess.Popen(
            self.argv("train", "--corpus", str(self.corpus), "--out", str(out), "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.env(),
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            msg = json.loads(line)
            if msg["type"] == "progress" and msg["step"] >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL

    def train(self, out: Path, *extra: str) -> dict[str, Any]:
        proc = self.cli("train", "--corpus", str(self.corpus), "--out", str(out), "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        return result_of(proc.stdout)


def result_of(stdout: str) -> dict[str, Any]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines and lines[-1]["type"] == "result", stdout[-2000:]
    return lines[-1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return Env(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="module")
def trained(env: Env) -> tuple[Path, dict[str, Any]]:
    out = env.root / "model"
    return out, env.train(out)


def test_tiny_model_learns_well_below_the_unigram_baseline(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    out, result = trained
    assert result["steps"] == STEPS and result["stopped"] == "max_steps"
    assert result["eval_loss"] < 0.5 * result["unigram_eval_loss"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_loss", "eval_loss", "perplexity", "tokens_seen", "wall_seconds"):
        assert metrics[key] > 0, key
    assert metrics["corpus_snapshot"] == "00001-test"
    assert metrics["tokens_per_s"] > 0
    assert [s for s, _ in metrics["history"]["eval"]] == [25, 50]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_dir_loads_with_auto_classes(trained: tuple[Path, dict[str, Any]]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = trained
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.hidden_size % 256 == 0
    assert cfg.intermediate_size % 256 == 0 and cfg.vocab_size == len(tok)
    assert 1e6 <= sum(p.numel() for p in model.parameters()) <= 3e6
    text = "def total_count(count, items):\n    for i in range(len(count)):\n"
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        loss = float(model(input_ids=ids, labels=ids).loss)
    assert loss < result["unigram_eval_loss"]
    assert tok.decode(ids[0]) == text


def test_kill_9_then_resume_finishes_like_an_uninterrupted_run(
    env: Env, trained: tuple[Path, dict[str, Any]]
) -> None:
    out = env.root / "killed"
    env.kill_during_training(out, random.Random().randint(12, 40))  # past two checkpoints
    assert not (out / "metrics.json").exists()

    # Without --resume the directory is refused rather than overwritten.
    refused = env.cli("train", "--corpus", str(env.corpus), "--out", str(out))
    assert refused.returncode == 1 and "pass --resume" in refused.stderr

    copy = env.root / "killed-corrupt"
    shutil.copytree(out, copy)
    result = env.train(out, "--resume")
    assert result["steps"] == STEPS and result["stopped"] == "max_steps"
    uninterrupted = trained[1]["eval_loss"]
    assert abs(result["eval_loss"] - uninterrupted) <= 0.02 * uninterrupted

    # A damaged newest checkpoint: a clear message, and the one before is used.
    ckpts = sorted((copy / "checkpoints").glob("*.pt"))
    assert len(ckpts) >= 2, ckpts
    newest, before = ckpts[-1], ckpts[-2]
    newest.write_bytes(newest.read_bytes()[:1000])
    proc2 = env.cli("train", "--corpus", str(env.corpus), "--out", str(copy), "--resume", "--json")
    assert proc2.returncode == 0, proc2.stderr
    assert f"checkpoint {newest} is corrupt" in proc2.stderr
    step_before = int(before.stem.split("-")[1])
    assert f"resuming from step {step_before}" in proc2.stderr
    resumed = result_of(proc2.stdout)
    assert resumed["steps"] == STEPS
    assert abs(resumed["eval_loss"] - uninterrupted) <= 0.02 * uninterrupted


def test_a_resumed_run_keeps_the_spec_it_started_with(
    env: Env, trained: tuple[Path, dict[str, Any]]
) -> None:
    from aicoderd.training import optim

    out = env.root / "respec"
    env.kill_during_training(out, 12)
    spec = json.loads((out / "train_spec.json").read_text())
    assert spec["training"]["max_steps"] == STEPS and spec["shape"]["hidden"] == 256
    changed = yaml.safe_load(env.config.read_text())
    changed["training"] |= {"preset": "small", "learning_rate": 1e-2, "warmup_steps": 20}
    config = env.root / "changed.yaml"
    config.write_text(yaml.safe_dump(changed))
    proc = env.cli(
        "train", "--corpus", str(env.corpus), "--out", str(out), "--resume", "--max-steps", "80",
        "--json", config=config,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    warning = "the configuration changed since this run started: "
    assert warning + "learning_rate 0.01 (run: 0.003), max_steps 80 (run: 50)," in proc.stderr
    assert "preset 'small' (run: 'tiny'), warmup_steps 20 (run: 5)" in proc.stderr
    result = result_of(proc.stdout)
    assert result["steps"] == result["total_steps"] == STEPS and 1e6 < result["parameters"] < 3e6
    assert result["plan"]["warmup"] == 5 and result["plan"]["bound"] == "max_steps"
    # The learning rate goes on along the schedule the run started with: no jump.
    events = [json.loads(line) for line in proc.stdout.splitlines() if '"progress"' in line]
    assert events and events[0]["step"] > 5  # resumed from a checkpoint, not from the start
    for e in events:
        expected = 3e-3 * optim.lr_factor(e["step"] - 1, warmup=5, total=STEPS, floor=0.1)
        assert e["lr"] == float(f"{expected:.4g}"), e
    uninterrupted = trained[1]["eval_loss"]
    assert abs(result["eval_loss"] - uninterrupted) <= 0.02 * uninterrupted


def test_eval_gate_promotes_only_a_model_that_is_not_worse(
    env: Env, trained: tuple[Path, dict[str, Any]]
) -> None:
    good = trained[0]
    weak = env.root / "weak"
    env.train(weak, "--max-steps", "5")
    ok = env.cli("eval", str(good), "--against", str(weak), "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["promote"] is True
    assert data["eval_loss_per_byte"] < data["against"]["eval_loss_per_byte"]
    assert data["perplexity"] > 1 and data["eval_tokens"] > 0
    refused = env.cli("eval", str(weak), "--against", str(good))
    assert refused.returncode == 1
    assert "keep current" in refused.stdout

    import sqlite3

    db = sqlite3.connect(env.data_dir / "state.db")
    rows = db.execute(
        "SELECT model, against, promoted, metrics FROM model_evals ORDER BY id"
    ).fetchall()
    db.close()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (str(good), str(weak), 1),
        (str(weak), str(good), 0),
    ]
    assert json.loads(rows[0][3])["eval_loss"] == pytest.approx(data["eval_loss"])


def test_finetuning_moves_likelihood_toward_accepted_and_away_from_rejected(
    env: Env, trained: tuple[Path, dict[str, Any]]
) -> None:
    import torch

    from aicoderd.training import preferences
    from aicoderd.training.gate import load_model
    from aicoderd.training.likelihood import mean_logprob

    base = trained[0]
    prompts = [f"def {n}_items(items, {n}):\n    # TODO\n" for n in ("total", "count", "size")]
    lines = []
    for p in prompts:
        lines.append(feedback_line(p, "    return sum(items)\n", "accepted"))
        lines.append(feedback_line(p, "    while True:\n        pass\n", "rejected"))
    lines.append(
        feedback_line("def name_value(x):\n", "    print(x)\n", "edited", "    return x\n")
    )
    lines.append(feedback_line("def offset(x):\n", "    import os\n    os.remove(x)\n", "rejected"))
    fb_file = env.root / "feedback.jsonl"
    fb_file.write_text("\n".join(lines) + "\n")
    out = env.root / "finetuned"
    proc = env.cli(
        "finetune", "--base", str(base), "--feedback", str(fb_file), "--out", str(out), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    result = result_of(proc.stdout)
    assert result["examples"] == {"chosen": 4, "pairs": 4, "unpaired": 1}
    assert result["replay_fraction"] == 0.2

    fb = preferences.from_files([fb_file]).examples
    device = torch.device("cpu")
    scores = {}
    for name, model_dir in (("before", base), ("after", out)):
        model, tok = load_model(model_dir, device)
        scores[name] = (
            mean_logprob(model, tok, fb.chosen, device),
            mean_logprob(model, tok, fb.rejected, device),
        )
    assert scores["after"][0] > scores["before"][0] + 0.5  # accepted: likelier
    assert scores["after"][1] < scores["before"][1]  # rejected: less likely
    assert (out / "metrics.json").exists() and (out / "tokenizer.json").exists()


def test_finetune_without_usable_feedback_exits_3(
    env: Env, trained: tuple[Path, dict[str, Any]]
) -> None:
    bad = env.root / "bad.jsonl"
    bad.write_text('{"schema": 1}\nnot json\n')
    missing = env.root / "missing.jsonl"
    proc = env.cli(
        "finetune",
        "--base",
        str(trained[0]),
        "--feedback",
        str(bad),
        str(missing),
        "--out",
        str(env.root / "never"),
    )
    assert proc.returncode == 3
    assert f"no usable feedback in {bad}, {missing}" in proc.stderr
    assert not (env.root / "never").exists()
