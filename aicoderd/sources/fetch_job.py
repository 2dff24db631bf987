"""Job ``source.fetch``: one run of one configured source, in the job's child process."""

from __future__ import annotations

import importlib
import time
from typing import Any

from aicoderd.errors import JobSkipped, SourceError
from aicoderd.jobctx import JobContext
from aicoderd.sources.base import FETCHERS, SourceRun
from aicoderd.store import DocumentFiles, Store


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    name = str(params.get("source", ""))
    config = ctx.settings.source(name)
    if config is None:
        raise SourceError(f"no source named {name!r} in the configuration")
    if not config.enabled and not params.get("force"):
        raise JobSkipped(f"source {name} is disabled")
    store = Store(ctx.settings.state_db)
    started = time.time()
    src = SourceRun(
        config=config,
        settings=ctx.settings,
        store=store,
        files=DocumentFiles(ctx.settings.documents_dir),
        state=store.sources.state(name),
        progress=ctx.progress,
        is_cancelled=lambda: ctx.cancelled,
    )
    module, _, func = FETCHERS[config.type].partition(":")
    fetched = False
    try:
        getattr(importlib.import_module(module), func)(src)
        fetched = True
        src.finish()  # the last batch, retirements, then the final state
    except Exception as exc:
        failure = str(exc)
        if not fetched:
            # The fetcher stopped half-way: what it put is stored, with the state that goes
            # with it (a fetcher records "done", e.g. git's last commit, only at its end).
            try:
                src.flush()
            except Exception as flush_exc:
                failure += f"; and the last batch could not be stored: {flush_exc}"
        src.close()
        store.sources.record_run(name, ctx.job_id, started, "failed", src.counts, failure)
        store.close()
        raise
    outcome = "cancelled" if ctx.cancelled else "partial" if src.errors else "succeeded"
    error = "; ".join(src.errors[:5]) or None
    store.sources.record_run(name, ctx.job_id, started, outcome, src.counts, error)
    store.close()
    return {"source": name, "outcome": outcome, **dict(src.counts), "errors": src.errors[:20]}
