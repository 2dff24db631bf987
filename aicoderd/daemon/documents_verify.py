"""Job ``documents.verify``: every stored document's file exists and still has its hash."""

from __future__ import annotations

import hashlib
from typing import Any

from aicoderd.jobctx import JobContext
from aicoderd.store import DocumentFiles, Store


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    store = Store(ctx.settings.state_db)
    files = DocumentFiles(ctx.settings.documents_dir)
    rows = store.documents.stored()
    missing, corrupt = [], []
    for i, row in enumerate(rows, 1):
        if ctx.cancelled:
            break
        path = files.path_for(row["sha256"])
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            missing.append(row["id"])
            continue
        if actual != row["sha256"]:
            corrupt.append(row["id"])
        ctx.progress(step=i, total=len(rows), message="verifying documents")
    ctx.progress(step=len(rows), total=len(rows), force=True)
    store.close()
    return {"checked": len(rows), "missing": missing, "corrupt": corrupt}
