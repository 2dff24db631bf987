"""What the daemon and the CLI agree on: routes, job states, exit statuses. Dependency-light,
so the CLI can import it without pulling the daemon in."""

from __future__ import annotations

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

# CLI exit statuses (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # also: invalid configuration
EXIT_SKIPPED = 3
EXIT_DAEMON_DOWN = 4
