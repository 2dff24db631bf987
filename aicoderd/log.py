"""structlog set-up: JSON lines on stdout when not a TTY (journald keeps them), a readable
console otherwise. Under systemd (``$JOURNAL_STREAM``) each line carries a ``<N>`` priority
prefix, which journald turns into the entry's priority and strips."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def _journald_prefix(_: Any, method: str, rendered: str) -> str:
    return f"<{_PRIORITY.get(method, 6)}>{rendered}"


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """The daemon logs to stdout (journald keeps it); the CLI passes stderr, so that its own
    output (``--json`` included) stays clean."""
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if os.environ.get("JOURNAL_STREAM"):
            processors.append(_journald_prefix)
    else:
        processors.append(structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiohttp, httpx) go to stderr, warnings and up only.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)


def get(name: str) -> Any:
    return structlog.get_logger(name)
