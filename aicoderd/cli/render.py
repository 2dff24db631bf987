"""Numbers, durations and progress as people read them (``--json`` keeps the raw values)."""

from __future__ import annotations

import math
import time
from typing import Any


def number(value: Any) -> str:
    """An int with thousands separators; a float to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def duration(seconds: float | None) -> str:
    """``45 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 and s < 600 else f"{round(s / 60)} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def progress(p: dict[str, Any] | None) -> str:
    """A job's progress in one line: step / total, rate, loss, ETA, or what it waits for."""
    if not p:
        return "starting"
    parts: list[str] = []
    step, total = p.get("step"), p.get("total")
    if isinstance(step, int | float) and isinstance(total, int | float) and total:
        percent = 100 * step / total
        parts.append(f"step {number(step)}/{number(total)} ({percent:.0f} %)")
    if p.get("tokens_per_s"):
        parts.append(f"{number(p['tokens_per_s'])} tokens/s")
    if p.get("loss") is not None:
        parts.append(f"loss {number(p['loss'])}")
    if p.get("eval_loss") is not None:
        parts.append(f"eval loss {number(p['eval_loss'])}")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {duration(p['eta_s'])}")
    if p.get("message") and not parts:
        parts.append(str(p["message"]))
    elif p.get("waiting_for"):
        parts.append(f"waiting for {p['waiting_for']}")
    return ", ".join(parts) or "running"


def fields(data: dict[str, Any]) -> str:
    """``k=v`` pairs with numbers rounded (an event's or a log line's fields)."""
    return " ".join(f"{k}={number(v)}" for k, v in data.items() if v is not None)
