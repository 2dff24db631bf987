"""The daemon's ``deploy`` job: a GGUF from ``data_dir/exports`` into Ollama. When Ollama is
down the job waits and retries with doubling back-off (its progress says so, which status
shows); the GGUF stays in ``exports/`` meanwhile."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aicoderd.errors import JobSkipped, OllamaError, OllamaUnavailable
from aicoderd.export.build import verified
from aicoderd.jobctx import JobContext
from aicoderd.ollama.client import Client
from aicoderd.ollama.deploy import DeployOptions, deploy_gguf


def _newest_export(exports: Path) -> Path | None:
    ggufs = sorted(exports.glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((g for g in ggufs if verified(g)), None)


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    s = ctx.settings
    gguf = Path(params["gguf"]) if params.get("gguf") else _newest_export(s.exports_dir)
    if gguf is None:
        raise JobSkipped("no verified GGUF in exports/ to deploy")
    if verified(gguf) is not True:
        raise OllamaError(f"{gguf} has no passing parity report; the daemon deploys none such")
    opts = DeployOptions.from_settings(s).named(params.get("name"))
    if params.get("version"):
        opts.version = str(params["version"])
    wait = s.ollama.retry_initial_seconds
    deadline = time.monotonic() + s.ollama.retry_give_up_seconds
    while True:
        try:
            with Client.from_settings(s) as client:
                return deploy_gguf(
                    client,
                    gguf,
                    opts,
                    lambda msg: ctx.progress(message=str(msg.get("status"))),
                    lambda phase, done, total: ctx.progress(message=phase, step=done, total=total),
                )
        except OllamaUnavailable as exc:
            if time.monotonic() + wait > deadline:
                raise
            ctx.progress(
                force=True,
                waiting_for="ollama",
                message=f"{exc}; retrying in {wait:.0f} s (the GGUF stays in {gguf.parent})",
            )
            _sleep(ctx, wait)
            wait = min(wait * 2, s.ollama.retry_max_seconds)


def _sleep(ctx: JobContext, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not ctx.cancelled:
        time.sleep(min(0.5, end - time.monotonic()))
    if ctx.cancelled:
        raise OllamaError("cancelled while waiting for Ollama")
