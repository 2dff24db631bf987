"""``aicoder``: commands for the running daemon (:mod:`.daemon_commands`, thin clients of its
socket API) and standalone stage commands (:mod:`.stage_commands`, no daemon needed).

Exit statuses (:mod:`aicoderd.errors`): 0 ok, 1 failed, 2 usage or invalid configuration,
3 skipped / not installed, 4 the daemon is not running.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aicoderd import __version__, log, protocol
from aicoderd.cli import assist_commands, daemon_commands, stage_commands
from aicoderd.errors import AicoderError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aicoder", description="Control aicoderd.")
    p.add_argument("--socket", help="the daemon's socket (default from the config)")
    p.add_argument(
        "--config", type=Path, help="config file (default $XDG_CONFIG_HOME/aicoderd/config.yaml)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--version", action="version", version=f"aicoder {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    daemon_commands.register(sub)
    stage_commands.register(sub)
    assist_commands.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The stages' own log lines: warnings and up, on stderr, never mixed into the output.
    log.configure("warning", "console", stream=sys.stderr)
    try:
        code: int = args.func(args)
    except AicoderError as exc:
        print(f"aicoder: {exc}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:
        return protocol.EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
