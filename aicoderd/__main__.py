"""``python -m aicoderd`` and the ``aicoderd`` command: the daemon in the foreground."""

import sys

from aicoderd import children


def run() -> int:
    children.lean()  # before anything imports structlog
    from aicoderd.daemon.main import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
