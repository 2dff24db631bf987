"""``aicoder review`` and ``aicoder complete`` as a user runs them: against the fake Ollama (a
real HTTP server rendering the model's stored template as Ollama does), and against a verified
GGUF in llama.cpp with no Ollama at all; interactive answers through a pseudo-terminal, the
non-interactive form for scripts; each verdict one schema-1 record in the feedback file."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aicoderd.export.build import BuildOptions, build
from aicoderd.ollama import deploy as d
from aicoderd.ollama.client import Client
from aicoderd.ollama.testing import FakeOllama
from aicoderd.sources.feedback_file import parse_line
from aicoderd.training import prompt

ROOT = Path(__file__).resolve().parents[2]
VERSION = "20260101-train-00007"
CODE = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"


@pytest.fixture
def deployed(fake: FakeOllama, client: Client, ggufs: dict[str, Path]) -> str:
    """The tiny model in the fake Ollama as ``aicoder:<version>`` and ``aicoder:latest``."""
    d.deploy_gguf(client, ggufs["f16"], d.DeployOptions(name="aicoder"))
    return "aicoder:latest"


@pytest.fixture
def verified_gguf(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An F32 export that passed its parity check in llama.cpp."""
    out = tmp_path_factory.mktemp("exports") / f"{VERSION}-f32.gguf"
    build(tiny_model, out, BuildOptions(out_type="f32", verify=True))
    return out


class User:
    """A home, a config and a project, and ``aicoder`` run in them."""

    def __init__(self, root: Path, ollama_host: str) -> None:
        self.home = root / "home"
        self.home.mkdir()
        self.data = root / "data"
        self.feedback = root / "feedback.jsonl"
        self.config = root / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(self.data),
                    "socket": str(root / "s.sock"),
                    "ollama": {"host": ollama_host},
                    "feedback": {"files": [str(self.feedback)]},
                }
            )
        )
        self.project = root / "project"
        self.project.mkdir()
        (self.project / "app.py").write_text(CODE)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AICODER_", "OLLAMA_"))}
        env.update(HOME=str(self.home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "aicoderd.cli.main", "--config", str(self.config), *args]

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.env,
            cwd=self.project,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def json(self, *args: str) -> dict[str, Any]:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def records(self) -> list[dict[str, Any]]:
        if not self.feedback.exists():
            return []
        lines = self.feedback.read_bytes().splitlines()
        return [parse_line(x).model_dump(mode="json", by_alias=True) for x in lines]

    def in_terminal(
        self, *args: str, answers: list[tuple[str, str]], env: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """Run on a pseudo-terminal; each (text, reply): wait for the text, then type."""
        pid, fd = pty.fork()
        if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
            os.chdir(self.project)
            os.execve(sys.executable, self.argv(*args), {**self.env, **(env or {})})
        seen = b""
        deadline = time.monotonic() + 120
        pending = list(answers)
        try:
            while True:
                if pending and pending[0][0].encode() in seen:
                    os.write(fd, pending.pop(0)[1].encode())
                    seen = seen.replace(b"?", b"!")  # a question is answered once
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:  # the child closed the terminal
                        break
                    if not chunk:
                        break
                    seen += chunk
                assert time.monotonic() < deadline, seen.decode(errors="replace")
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        if os.WIFSIGNALED(status):
            pytest.fail(f"killed by {signal.Signals(os.WTERMSIG(status)).name}")
        return os.WEXITSTATUS(status), seen.decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def make_user(tmp_path: Path) -> Callable[[str], User]:
    def make(host: str) -> User:
        root = tmp_path / f"user{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return User(root, host)

    return make


# -- through Ollama ------------------------------------------------------------------------------


def test_review_json_through_ollama_renders_the_review_layout(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User]
) -> None:
    user = make_user(fake.url)
    out = user.json("review", "app.py:1-2")
    assert (out["backend"], out["model"]) == ("ollama", deployed)
    assert out["suggestion"].startswith("t0t1") and "record" not in out
    assert fake.rendered[-1] == prompt.review_prompt("def add(a, b):\n    return a + b\n")
    assert fake.generated[-1].get("suffix") is None and not fake.generated[-1].get("raw")
    assert out["diff"].startswith("--- a/app.py\n+++ b/app.py\n")
    assert user.records() == []  # --json alone records nothing


def test_review_records_a_verdict_without_asking(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User]
) -> None:
    user = make_user(fake.url)
    fix = user.project / "fix.py"
    fix.write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    out = user.json("review", "app.py:1-2", "--verdict", "edited", "--correction-file", str(fix))
    (rec,) = user.records()
    assert out["record"] == rec and out["feedback_file"] == str(user.feedback)
    assert rec["verdict"] == "edited" and rec["correction"] == fix.read_text()
    assert rec["prompt"] == "def add(a, b):\n    return a + b\n" and rec["lines"] == [1, 2]
    assert (rec["model"], rec["source"], rec["backend"]) == (deployed, "aicoder-review", "ollama")
    assert (rec["file"], rec["language"]) == ("app.py", "python")
    # A verdict on a suggestion already shown (an editor plugin): the model is not asked.
    asked = len(fake.generated)
    shown = user.project / "shown.txt"
    shown.write_text("    return b + a\n")
    user.json(
        "review", "app.py:1-2", "--verdict", "rejected", "--suggestion-file", str(shown),
        "--model", deployed,
    )  # fmt: skip
    assert len(fake.generated) == asked
    assert user.records()[1]["suggestion"] == shown.read_text()
    bad = user.run("review", "app.py:1-2", "--verdict", "edited")
    assert bad.returncode == 2 and "--correction-file" in bad.stderr


def test_review_of_a_git_diff(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User]
) -> None:
    user = make_user(fake.url)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(user.project)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "app.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (user.project / "app.py").write_text(CODE.replace("a - b", "b - a"))
    out = user.json("review", "--diff", "--verdict", "accepted")
    diff = fake.rendered[-1].removeprefix(prompt.REVIEW).removesuffix(prompt.SUGGESTION)
    assert diff.startswith("diff --git a/app.py b/app.py") and "+    return b - a" in diff
    assert out["record"]["prompt"] == diff and out["record"]["diff"] == "HEAD"
    assert user.run("review", "--diff", "HEAD", "app.py").returncode == 2  # one of them


def test_review_in_a_terminal_reject_and_edit(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User], tmp_path: Path
) -> None:
    user = make_user(fake.url)
    code, shown = user.in_terminal("review", "app.py:5-6", answers=[("[s]kip?", "r\n")])
    assert code == 0, shown
    assert "--- a/app.py" in shown and "+t0t1" in shown and "recorded rejected" in shown
    assert [r["verdict"] for r in user.records()] == ["rejected"]
    # Edit: $EDITOR gets the suggestion in a file and saves the correction.
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\nfrom pathlib import Path\n"
        "p = Path(sys.argv[1])\np.write_text(p.read_text().replace('t0', 'fixed-'))\n"
    )
    code, shown = user.in_terminal(
        "review",
        "app.py:5-6",
        answers=[("[s]kip?", "e\n")],
        env={"EDITOR": f"{sys.executable} {editor}", "VISUAL": ""},
    )
    assert code == 0, shown
    edited = user.records()[-1]
    assert edited["verdict"] == "edited" and edited["correction"].startswith("fixed-t1")
    assert edited["suggestion"].startswith("t0t1")


def test_complete_through_ollama_uses_the_template_and_records_on_yes(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User]
) -> None:
    user = make_user(fake.url)
    code, shown = user.in_terminal("complete", "app.py:2:5", "--record", answers=[("[y/n]", "y\n")])
    assert code == 0, shown
    prefix, suffix = "def add(a, b):\n    ", "return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    assert fake.generated[-1]["prompt"] == prefix and fake.generated[-1]["suffix"] == suffix
    assert fake.rendered[-1] == prompt.fim_prompt(prefix, suffix)
    (rec,) = user.records()
    assert rec["verdict"] == "accepted" and rec["source"] == "aicoder-complete"
    assert (rec["prefix"], rec["suffix"], rec["prompt"]) == (prefix, suffix, prefix)
    assert rec["suggestion"].startswith("t0t1")
    code, shown = user.in_terminal("complete", "app.py:2:5", "--record", answers=[("[y/n]", "n\n")])
    assert user.records()[-1]["verdict"] == "rejected"


def test_complete_with_an_empty_side_is_sent_raw(
    fake: FakeOllama, deployed: str, make_user: Callable[[str], User]
) -> None:
    """Ollama lays out fill-in-the-middle only when prompt and suffix are both non-empty."""
    user = make_user(fake.url)
    out = user.json("complete", "app.py:6")  # the end of the last line: the suffix is "\n"
    assert out["suggestion"].startswith("t0") and fake.generated[-1]["suffix"] == "\n"
    assert fake.rendered[-1] == prompt.fim_prompt(CODE.rstrip("\n"), "\n")
    done = user.run("complete", "--prefix-file", "-", "--json", stdin="import os\n")
    assert done.returncode == 0, done.stderr
    assert fake.generated[-1]["raw"] is True and "suffix" not in fake.generated[-1]
    assert fake.rendered[-1] == prompt.fim_prompt("import os\n", "")
    (user.project / "empty").write_text("")
    done = user.run(
        "complete", "--prefix-file", "empty", "--suffix-file", "app.py", "--json"
    )  # the start of a file: no prefix
    assert done.returncode == 0, done.stderr
    assert fake.rendered[-1] == prompt.fim_prompt("", CODE)
    assert user.run("complete", "app.py:99").returncode == 2
    assert "--verdict" in user.run("complete", "app.py:2", "--record").stderr  # no terminal


def test_nothing_to_ask_says_why(make_user: Callable[[str], User]) -> None:
    user = make_user("127.0.0.1:9")
    done = user.run("review", "app.py")
    assert done.returncode == 1
    assert (
        "not reachable at http://127.0.0.1:9" in done.stderr and "no verified GGUF" in done.stderr
    )


# -- through llama.cpp, no Ollama ----------------------------------------------------------------


def test_complete_and_review_through_llama_cpp_without_ollama(
    verified_gguf: Path, tiny_model: Path, make_user: Callable[[str], User]
) -> None:
    user = make_user("127.0.0.1:9")  # nothing listens there
    user.data.mkdir()
    exports = user.data / "exports"
    exports.symlink_to(verified_gguf.parent, target_is_directory=True)
    out = user.json("complete", "app.py:2:5", "--max-tokens", "6", "--verdict", "accepted")
    assert out["backend"] == "llama.cpp" and out["model"] == f"aicoder:{VERSION.lower()}"
    prefix, suffix = "def add(a, b):\n    ", "return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
    assert out["suggestion"] == _greedy(tiny_model, prompt.fim_prompt(prefix, suffix), 6)
    assert out["record"]["backend"] == "llama.cpp" and out["record"]["prefix"] == prefix
    review = user.json("review", "app.py:1-2", "--max-tokens", "6")
    assert review["suggestion"] == _greedy(
        tiny_model, prompt.review_prompt("def add(a, b):\n    return a + b\n"), 6
    )
    code, shown = user.in_terminal("review", "app.py:1-2", "--max-tokens", "6",
                                   answers=[("[s]kip?", "a\n")])  # fmt: skip
    assert code == 0 and "using" in shown and verified_gguf.name in shown, shown
    assert [r["verdict"] for r in user.records()] == ["accepted", "accepted"]


def _greedy(model_dir: Path, text: str, max_tokens: int) -> str:
    """What the model itself (PyTorch) writes greedily after ``text``, to a stop token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True).eval()
    ids = tok(text, add_special_tokens=True)["input_ids"]
    stops = {tok.convert_tokens_to_ids(t) for t in prompt.STOP_TOKENS} | {tok.eos_token_id}
    out: list[int] = []
    with torch.no_grad():
        while len(out) < max_tokens:
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt in stops:
                break
            out.append(nxt)
    return str(tok.decode(out))
