"""``aicoder review`` and ``aicoder complete``: standalone (the configuration, no daemon). Their
work (:mod:`.assist`, which loads httpx, gguf or llama.cpp) is imported only when one runs."""

from __future__ import annotations

import argparse
from typing import Any

from aicoderd.cli.common import JSON_OPTION, settings

VERDICTS = ("accepted", "rejected", "edited")
BACKENDS = ("auto", "ollama", "llamacpp")


def register(sub: Any) -> None:
    rv = sub.add_parser(
        "review",
        help="ask the model for a suggestion on code; accept, reject or edit it",
        parents=[JSON_OPTION],
    )
    rv.add_argument("path", nargs="?", help="PATH or PATH:START-END (lines, 1-based)")
    rv.add_argument("--diff", nargs="?", const="HEAD", metavar="REV", help="review git diff REV")
    rv.add_argument("--max-tokens", type=int, default=256, help="suggestion length (tokens)")
    rv.set_defaults(func=run, action="review")

    co = sub.add_parser(
        "complete",
        help="a fill-in-the-middle completion at a cursor",
        parents=[JSON_OPTION],
    )
    co.add_argument("at", nargs="?", help="PATH:LINE[:COL] (1-based; no COL: end of line)")
    co.add_argument("--prefix-file", help="the text before the cursor (- for stdin)")
    co.add_argument("--suffix-file", help="the text after the cursor (- for stdin)")
    co.add_argument("--file", help="the file name to record with --prefix-file")
    co.add_argument("--record", action="store_true", help="record it as feedback (asks y/n)")
    co.add_argument("--max-tokens", type=int, default=64, help="completion length (tokens)")
    co.set_defaults(func=run, action="complete")

    for p in (rv, co):
        p.add_argument("--verdict", choices=VERDICTS, help="record this verdict, without asking")
        p.add_argument("--correction-file", help="the corrected code for --verdict edited")
        p.add_argument(
            "--suggestion-file", help="record a verdict on this suggestion (the model not asked)"
        )
        p.add_argument("--model", help="the Ollama model (default: <ollama.model>:latest)")
        p.add_argument("--backend", choices=BACKENDS, default="auto", help="default: auto")
        p.add_argument("--feedback-file", help="default: the first of feedback.files")


def run(args: argparse.Namespace) -> int:
    from aicoderd.cli import assist

    code: int = getattr(assist, args.action)(args, settings(args))
    return code
