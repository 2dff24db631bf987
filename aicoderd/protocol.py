"""What the daemon and the CLI agree on: routes, job states, exit statuses. Dependency-light,
so the CLI can import it without pulling the daemon in."""

from __future__ import annotations

from aicoderd import errors

API = "/v1"
HOST = "aicoderd"  # the Host header on the socket; any name works

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, SKIPPED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "skipped",
)
JOB_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, SKIPPED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED})

# Allowed moves; anything else is refused with an error that names the state.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, SKIPPED, QUEUED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
    SKIPPED: frozenset(),
}

# CLI exit statuses (documented in the README); defined with the error tree.
EXIT_OK = errors.EXIT_OK
EXIT_FAILED = errors.EXIT_FAILED
EXIT_USAGE = errors.EXIT_USAGE
EXIT_SKIPPED = errors.EXIT_SKIPPED
EXIT_DAEMON_DOWN = errors.EXIT_DAEMON_DOWN
