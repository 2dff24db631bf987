"""Job ``corpus.build``: the daemon's documents into ``data_dir/corpus/``, in the job's child
process (params: ``full`` — forget earlier decisions and rebuild everything)."""

from __future__ import annotations

from typing import Any

from aicoderd.corpus.build import Builder
from aicoderd.corpus.inputs import StoreInputs
from aicoderd.errors import BuildCancelled, JobSkipped
from aicoderd.jobctx import JobContext
from aicoderd.store import DocumentFiles, Store


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    settings = ctx.settings
    store = Store(settings.state_db)
    try:
        builder = Builder(
            StoreInputs(store.documents, DocumentFiles(settings.documents_dir)),
            settings.corpus_dir,
            settings.corpus,
            full=bool(params.get("full")),
            progress=ctx.progress,
            cancelled=lambda: ctx.cancelled,
        )
        try:
            manifest = builder.run()
        except BuildCancelled:
            return {"cancelled": True}
    finally:
        store.close()
    if manifest is None:
        raise JobSkipped("the corpus is up to date")
    return {
        key: manifest[key]
        for key in ("snapshot", "documents", "bytes", "tokens_estimate", "removed", "redactions")
    } | {"build": manifest["build"]}
