"""What every command shares: the ``--json`` option, the daemon's socket and client, the
configuration, and printing either JSON or the human form."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd import paths
from aicoderd.cli.client import Client
from aicoderd.config import Settings
from aicoderd.errors import ConfigError

Command = Callable[[argparse.Namespace], int]

# Every sub-command takes --json too (`aicoder status --json` reads naturally); SUPPRESS keeps
# a --json given before the sub-command.
JSON_OPTION = argparse.ArgumentParser(add_help=False)
JSON_OPTION.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON")


def settings(args: argparse.Namespace) -> Settings:
    """The configuration, without the checks that only the daemon needs."""
    from aicoderd.config import load_config

    return load_config(args.config, check_paths=False)


def resolve_socket(args: argparse.Namespace) -> Path:
    """--socket, then $AICODER_SOCKET, then the config file's ``socket``, then the default."""
    if args.socket:
        return Path(args.socket)
    if os.environ.get("AICODER_SOCKET"):
        return Path(os.environ["AICODER_SOCKET"])
    try:
        return settings(args).socket
    except ConfigError:
        return paths.default_socket()


def client(args: argparse.Namespace, timeout: float | None = 30.0) -> Client:
    return Client(resolve_socket(args), timeout=timeout)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], None]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        human(data)
