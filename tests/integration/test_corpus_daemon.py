"""The daemon queues ``corpus.build`` by itself once dropped files are stored, and reports the
snapshot in ``GET /v1/status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProc, wait_for

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def drop(inbox: Path, name: str, text: str) -> None:
    tmp = inbox / f".{name}.part"
    tmp.write_text(text)
    os.rename(tmp, inbox / name)


def corpus(d: DaemonProc) -> dict[str, Any]:
    data: dict[str, Any] = d.status()["corpus"]
    return data


def test_ingestion_triggers_a_debounced_build(make_daemon: Callable[..., DaemonProc]) -> None:
    d = make_daemon(corpus={"debounce_seconds": 0.5}).start()
    assert corpus(d)["snapshot"] is None
    for name in ("textwrap.py", "shlex.py", "getopt.py"):
        drop(d.inbox, name, (STDLIB / name).read_text())
    drop(d.inbox, "tiny.py", "x = 1\n")
    first = wait_for(lambda: corpus(d) if corpus(d)["documents"] == 3 else None, timeout=90)
    assert first["removed"] == {"quality.min_chars": 1} and first["bytes"] > 10_000

    def builds() -> list[str]:
        jobs = d.get("/v1/jobs").json()["jobs"]
        return [j["state"] for j in jobs if j["kind"] == "corpus.build"]

    wait_for(lambda: builds() == ["succeeded"], timeout=30)  # one build for the burst
    # the standalone reader sees the daemon's corpus in data_dir/corpus
    stats = subprocess.run(
        [sys.executable, "-m", "aicoderd.cli.main", "--config", str(d.config_path),
         "corpus", "stats", "--json"],
        env=d.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["snapshot"] == first["snapshot"]
    drop(d.inbox, "colorsys.py", (STDLIB / "colorsys.py").read_text())
    second = wait_for(lambda: corpus(d) if corpus(d)["documents"] == 4 else None, timeout=90)
    assert second["snapshot"] != first["snapshot"]
    assert (d.data_dir / "corpus" / "preprocessed_corpus.txt").read_text().count(
        "<|endoftext|>"
    ) == 3
    d.stop()
