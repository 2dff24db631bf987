"""The deployed versions of a model in Ollama: each ``<model>:<version>`` tag with the metrics
its GGUF carries, oldest first, and moving ``<model>:latest`` back to one of them.

Versions are ordered by when each was created in Ollama (``modified_at`` of its tag, written
once by the deploy's create), never by name: version names sort by kind before time
(``20260101-finetune-00009`` < ``20260101-train-00003``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aicoderd.errors import OllamaError
from aicoderd.export import constants as EC
from aicoderd.ollama import names
from aicoderd.ollama.client import Client

_NEVER = datetime.min.replace(tzinfo=UTC)


def created(entry: dict[str, Any]) -> datetime:
    """When an ``/api/tags`` entry was created (Go writes RFC 3339 with nanoseconds)."""
    try:
        stamp = datetime.fromisoformat(str(entry.get("modified_at")))
    except ValueError:
        return _NEVER
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def versions(client: Client, model: str) -> list[dict[str, Any]]:
    """Every tag of ``model`` but ``latest``, with its metrics, oldest first."""
    base = names.parse(model)
    tags = [
        m
        for m in client.tags()
        if names.is_valid(m["name"]) and names.parse(m["name"]).key()[:3] == base.key()[:3]
    ]
    latest = next(
        (m["digest"] for m in tags if names.parse(m["name"]).tag == names.DEFAULT_TAG), None
    )
    out = []
    for m in sorted(tags, key=lambda m: (created(m), m["name"])):
        tag = names.parse(m["name"]).tag
        if tag == names.DEFAULT_TAG:
            continue
        info = (client.show(m["name"]) or {}).get("model_info") or {}
        metrics = {
            k.removeprefix(EC.KEY_METRIC): v for k, v in info.items() if k.startswith(EC.KEY_METRIC)
        }
        out.append(
            {
                "name": m["name"],
                "version": tag,
                "latest": m["digest"] == latest,
                "modified_at": m.get("modified_at"),
                "size": m.get("size"),
                "quantization": (m.get("details") or {}).get("quantization_level"),
                "metrics": metrics,
            }
        )
    return out


def point_latest(client: Client, model: str, version: str | None = None) -> dict[str, Any]:
    """Point ``<model>:latest`` at ``version`` (default: the one created before the current)."""
    found = versions(client, model)
    if not found:
        raise OllamaError(f"no versions of {model} in Ollama")
    if version is None:
        current = next((i for i, v in enumerate(found) if v["latest"]), len(found))
        if current == 0:
            raise OllamaError(f"{found[0]['name']} is the oldest version; nothing to roll back to")
        chosen = found[current - 1]
    else:
        match = [v for v in found if v["version"] == version]
        if not match:
            known = ", ".join(v["version"] for v in found)
            raise OllamaError(f"{model} has no version {version!r} (known: {known})")
        chosen = match[0]
    latest = names.parse(model).with_tag(names.DEFAULT_TAG).display
    if client.loaded(latest):
        client.unload(latest)
    client.copy(chosen["name"], latest)
    return {"latest": latest, "now": chosen["name"]}


def quality_line(m: dict[str, Any]) -> str:
    """A model's evaluation figures and gate verdict on one line ("" when never evaluated):
    for ``aicoder models`` (the GGUF's metrics) and ``aicoder status`` (metrics.json)."""
    if not isinstance(m.get("infill_exact_match"), float):
        return ""
    line = (
        f"infill {m['infill_exact_match']:.3f}  next line {m.get('next_line_exact_match') or 0:.3f}"
        f"  bits/byte {m.get('bits_per_byte') or 0:.3f} (xz {m.get('xz_bits_per_byte') or 0:.3f})"
    )
    if m.get("gate"):
        line += f"  gate {m['gate']}: {m.get('gate_reason', '')}"
    return line
