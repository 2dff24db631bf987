"""``aicoder doctor``: one line per check — ok, note (optional piece missing) or problem — each
problem with how to fix it."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from aicoderd import paths
from aicoderd.cli.client import Client
from aicoderd.config import Settings, load_config
from aicoderd.errors import AicoderError, ConfigError
from aicoderd.export import llamacpp
from aicoderd.export.constants import LLAMA_CONVERT_SCRIPT
from aicoderd.export.inference import INSTALL_HINT
from aicoderd.ollama.host import base_url
from aicoderd.sources.editor_logs import EditorLog, Outcome, Skip, editor_logs
from aicoderd.sources.feedback_file import FeedbackTail, TailState

LLAMA_CPP_GIT = "https://github.com/ggml-org/llama.cpp"

MIN_FREE_BYTES = 5 * 2**30
EDITOR_SURVEY_BYTES = 64 * 2**20  # of an editor's logs the doctor maps, at most


@dataclass
class Check:
    name: str
    level: str  # "ok" | "note" | "problem"
    detail: str
    fix: str = ""


def check_config(config: Path | None) -> tuple[Check, Settings | None]:
    where = config or paths.default_config_file()
    try:
        settings = load_config(config)
    except ConfigError as exc:
        return Check(
            "config",
            "problem",
            f"{where}: " + "; ".join(exc.problems),
            "fix the keys named above (see config.example.yaml)",
        ), None
    state = "" if where.exists() else " (file absent: defaults)"
    return Check("config", "ok", f"{where}{state}"), settings


def check_dirs(s: Settings) -> Check:
    for d in (s.data_dir, s.socket.parent):
        probe = d if d.exists() else next((p for p in d.parents if p.exists()), Path("/"))
        if not os.access(probe, os.W_OK | os.X_OK):
            return Check(
                "directories",
                "problem",
                f"{probe} is not writable",
                f"make {d} writable by {os.getuid()} or set data_dir / socket",
            )
    return Check("directories", "ok", f"data {s.data_dir}, socket dir {s.socket.parent}")


def check_private(s: Settings) -> Check:
    """The stored documents are raw (secrets are redacted only in the corpus): private."""
    readable = []
    for entry in (s.data_dir, s.documents_dir, s.state_db):
        try:
            mode = entry.stat().st_mode
        except OSError:
            continue
        if mode & 0o077:
            readable.append(f"{entry} ({oct(mode & 0o777)})")
    if readable:
        return Check(
            "privacy",
            "problem",
            "readable by others: " + ", ".join(readable),
            "the daemon repairs it at its next start (folders 0700, files 0600); or run"
            f" `chmod -R go-rwx {s.data_dir}`",
        )
    return Check("privacy", "ok", f"{s.data_dir} is yours alone (folders 0700, files 0600)")


def check_disk(s: Settings) -> Check:
    probe = next((p for p in (s.data_dir, *s.data_dir.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    detail = f"{free / 2**30:.1f} GiB free on {probe}"
    if free < MIN_FREE_BYTES:
        return Check(
            "disk", "problem", detail, "free space: training checkpoints and exports need a few GiB"
        )
    return Check("disk", "ok", detail)


def check_daemon(s: Settings, socket: Path) -> Check:
    client = Client(socket, timeout=5.0)
    try:
        st = client.request("GET", "/v1/status")
    except AicoderError as exc:
        return Check("daemon", "problem", str(exc), "`aicoder service install`, or run `aicoderd`")
    finally:
        client.close()
    return Check(
        "daemon",
        "ok",
        f"version {st['version']}, {st['documents']['total']} "
        f"documents, watcher {st['watcher']}, socket {socket}",
    )


def check_torch() -> list[Check]:
    # In a child process: the CLI never imports torch itself.
    code = (
        "import torch;print(torch.__version__);print(torch.cuda.is_available());"
        "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        ).stdout.split("\n")
    except subprocess.TimeoutExpired:
        out = []
    if len(out) < 2 or not out[0]:
        return [
            Check(
                "torch",
                "problem",
                "not importable",
                "pip install torch==2.13.0 (CPU) or a CUDA build for your GPU",
            )
        ]
    cuda = out[1] == "True"
    return [
        Check("torch", "ok", out[0]),
        Check(
            "cuda",
            "ok" if cuda else "note",
            out[2] if cuda else "no CUDA device: training runs on the CPU (fp32)",
        ),
    ]


def check_ollama(s: Settings) -> Check:
    url = base_url(s.ollama.host)
    try:
        resp = httpx.get(f"{url}/api/version", timeout=3.0)
        version = resp.json().get("version", "?")
    except (httpx.HTTPError, ValueError) as exc:
        return Check(
            "ollama",
            "problem",
            f"not reachable at {url} ({type(exc).__name__})",
            "start Ollama (`ollama serve` or its service), or set ollama.host / OLLAMA_HOST",
        )
    return Check("ollama", "ok", f"version {version} at {url}")


# In a child process: a llama.cpp that crashes on a file must not take the doctor with it.
_PARITY_PROBE = """
import sys
from pathlib import Path
import llama_cpp
print(llama_cpp.__version__, flush=True)
if len(sys.argv) > 1:
    from aicoderd.export.inference import load
    load(Path(sys.argv[1]), n_ctx=64)
    print("loaded", flush=True)
"""


def check_parity(s: Settings) -> Check:
    """llama-cpp-python, which the export's parity check needs: importable, and able to load
    the newest GGUF in data_dir/exports when there is one."""
    ggufs = sorted(s.exports_dir.glob("*.gguf"), key=lambda p: p.stat().st_mtime)
    probe = [sys.executable, "-c", _PARITY_PROBE, *[str(g) for g in ggufs[-1:]]]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return Check("parity", "problem", "llama-cpp-python did not answer in 120 s")
    out = done.stdout.split()
    if not out:
        return Check("parity", "problem", "llama-cpp-python is not importable", INSTALL_HINT)
    detail = f"llama-cpp-python {out[0]}"
    if not ggufs:
        return Check("parity", "ok", f"{detail} (no GGUF in {s.exports_dir} to load yet)")
    if done.returncode != 0 or "loaded" not in out:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return Check(
            "parity",
            "problem",
            f"{detail} cannot load {ggufs[-1]}: {why}",
            "reinstall llama-cpp-python (`pip install --force-reinstall llama-cpp-python`)",
        )
    return Check("parity", "ok", f"{detail}, loads {ggufs[-1].name}")


def clone_command(root: Path, url: str = LLAMA_CPP_GIT) -> str:
    """Puts a llama.cpp checkout in ``root`` whether the folder exists or not, keeping the
    README.md it may hold (a sparse checkout leaves that one file out)."""
    r = shlex.quote(str(root))
    return (
        f"mkdir -p {r} && git -C {r} init -q"
        f" && git -C {r} sparse-checkout set --no-cone '/*' '!/README.md'"
        f" && git -C {r} pull --depth 1 {url} master"
    )


def check_llama_cpp(s: Settings) -> Check:
    root = s.export.llama_cpp_dir
    if root is None:
        return Check(
            "llama.cpp",
            "note",
            "no checkout: export.llama_cpp_dir is unset and there is no llama.cpp/ beside the"
            " package (optional: k-quants and converting finetunes of known models)",
            f"set export.llama_cpp_dir, e.g. after {clone_command(Path('~/llama.cpp'))}",
        )
    if not (root / LLAMA_CONVERT_SCRIPT).exists():
        return Check(
            "llama.cpp",
            "note",
            f"no checkout in {root} (optional: k-quants and converting finetunes of known models)",
            f"{clone_command(root)}, then build it (see llama.cpp/README.md)",
        )
    if llamacpp.quantize_binary(root) is None:
        return Check(
            "llama.cpp",
            "note",
            f"checkout in {root}, llama-quantize not built",
            f"cmake -B {root}/build {root} && cmake --build {root}/build -t llama-quantize",
        )
    return Check("llama.cpp", "ok", f"{root}, llama-quantize built")


def check_editor_logs(s: Settings) -> list[Check]:
    """Where each editor's log was looked for, and what mapping it would give the daemon."""
    enabled = {log.name: log for log in editor_logs(s)}
    checks = []
    for name in ("continue", "tabby"):
        log = enabled.get(name)
        if log is None:
            checks.append(Check(name, "note", f"feedback: off (feedback.editors.{name})"))
        else:
            checks.append(_survey(log))
    return checks


def _survey(log: EditorLog) -> Check:
    label, key = log.name, f"feedback.editors.{log.name}.path"
    if not log.root.is_dir():
        return Check(
            label,
            "note",
            f"feedback: looked in {log.root}: no such folder",
            f"if {log.name} keeps its logs elsewhere, set {key}",
        )
    files = log.files()
    if not files:
        wanted = ", ".join(log.patterns)
        return Check(label, "note", f"feedback: looked in {log.root}: no log files ({wanted}) yet")
    verdicts: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    left = EDITOR_SURVEY_BYTES
    for path in files:
        with FeedbackTail(path, TailState(None, 0)) as tail:
            while left > 0:
                lines, _ = tail.poll(max_bytes=min(left, 4 * 2**20))
                if not lines:
                    break
                left -= sum(len(line.raw) + 1 for line in lines)
                for line in lines:
                    _tally(log.feed(line), verdicts, skipped)
    _tally(log.expire(time.time()), verdicts, skipped)
    found = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "none"
    detail = f"feedback: looked in {log.root}: {len(files)} files; records: {found}"
    if skipped:
        reasons = "; ".join(f"{reason} {n}" for reason, n in skipped.most_common())
        detail += f"; events not used: {reasons}"
    if left <= 0:
        detail += f" (the first {EDITOR_SURVEY_BYTES // 2**20} MiB)"
    return Check(label, "ok", detail)


def _tally(outcomes: list[Outcome], verdicts: Counter[str], skipped: Counter[str]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Skip):
            skipped[outcome.reason] += 1
        else:
            verdicts[outcome.verdict] += 1


def check_inotify() -> Check:
    try:
        watches = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return Check("inotify", "note", "limits unknown (not Linux?): folders are polled")
    if watches < 8192:
        return Check(
            "inotify",
            "problem",
            f"max_user_watches={watches}",
            "sysctl fs.inotify.max_user_watches=524288",
        )
    return Check("inotify", "ok", f"max_user_watches={watches}")


def run_checks(config: Path | None, socket: Path | None) -> list[Check]:
    first, settings = check_config(config)
    checks = [first]
    if settings is not None:
        steps: list[Callable[[], Check]] = [
            lambda: check_dirs(settings),
            lambda: check_private(settings),
            lambda: check_disk(settings),
            lambda: check_daemon(settings, socket or settings.socket),
            lambda: check_ollama(settings),
            lambda: check_parity(settings),
            lambda: check_llama_cpp(settings),
        ]
        checks += [step() for step in steps]
        checks += check_editor_logs(settings)
    checks += check_torch()
    checks.append(check_inotify())
    return checks
