"""The daemon's ``deploy`` job when Ollama is down: it waits and retries with back-off, the
GGUF stays in ``exports/``, status shows what the job waits for, and once Ollama answers the
model is deployed."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import httpx

from aicoderd.export.build import BuildOptions, build, verified
from aicoderd.ollama.testing import FakeOllama
from tests.conftest import wait_for
from tests.export.tiny import Shape, make_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_deploy_waits_for_ollama_then_deploys(make_daemon: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "20260101-train-00003", Shape(), {"eval_loss": 2.0})
    gguf = tmp_path / "20260101-train-00003-f16.gguf"
    build(model, gguf, BuildOptions(out_type="f16", verify=True))
    assert verified(gguf) is True

    port = _free_port()
    d = make_daemon(
        ollama={"host": f"127.0.0.1:{port}", "retry_initial_seconds": 1, "retry_max_seconds": 2},
        pipeline={"auto_train": False, "auto_finetune": False},
    )
    exports = d.data_dir / "exports"
    exports.mkdir(parents=True)
    for sidecar in tmp_path.glob(gguf.name + "*"):  # the GGUF and its parity report
        shutil.copy2(sidecar, exports / sidecar.name)
    d.start()
    job = d.client.post("/v1/jobs", json={"kind": "deploy", "params": {}}).json()

    def waiting() -> dict[str, Any] | None:
        running = d.status()["jobs"]["running"]
        mine = [r for r in running if r["id"] == job["id"]]
        progress = (mine[0].get("progress") or {}) if mine else {}
        return progress if progress.get("waiting_for") == "ollama" else None

    progress = wait_for(waiting, timeout=60)
    assert "retrying in" in progress["message"] and str(exports) in progress["message"]
    assert (exports / gguf.name).exists()  # the GGUF stays while Ollama is down

    with FakeOllama(port=port) as fake:
        done = wait_for(
            lambda: (j := d.get(f"/v1/jobs/{job['id']}").json())["state"] == "succeeded" and j,
            timeout=60,
        )
        assert done["result"]["name"].startswith("aicoder:")
        names = [m["name"] for m in httpx.get(f"{fake.url}/api/tags").json()["models"]]
        assert "aicoder:latest" in names and done["result"]["name"] in names
    assert (exports / gguf.name).exists()
