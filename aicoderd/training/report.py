"""What a finished run leaves beside the model: ``metrics.json`` and ``loss.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aicoderd.fsutil import atomic_write

METRICS = "metrics.json"
PLOT = "loss.png"


def write_metrics(out_dir: Path, metrics: dict[str, Any]) -> None:
    atomic_write(out_dir / METRICS, (json.dumps(metrics, indent=2) + "\n").encode())


def read_metrics(model_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((model_dir / METRICS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def plot_losses(
    out_dir: Path, train: list[tuple[int, float]], held: list[tuple[int, float]], title: str
) -> None:
    """Train and eval loss against the step, as a PNG (Agg: no display needed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
    if held:
        ax.plot(*zip(*held, strict=True), label="eval", marker="o", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write(out_dir / PLOT, buf.getvalue())
