"""``aicoder sources`` and ``aicoder fetch``: scheduled sources, thin clients of the API."""

from __future__ import annotations

import json
import time
from typing import Any

from aicoderd import protocol
from aicoderd.cli.client import Client

_EXIT = {protocol.SUCCEEDED: protocol.EXIT_OK, protocol.SKIPPED: protocol.EXIT_SKIPPED}


def cmd_sources(client: Client, as_json: bool) -> int:
    data = client.request("GET", "/v1/sources")
    if as_json:
        print(json.dumps(data, indent=2))
        return protocol.EXIT_OK
    if not data["sources"]:
        print("no sources configured (config key: sources)")
    for s in data["sources"]:
        print(_line(s))
        if s["last_error"]:
            print(f"    last error: {s['last_error']}")
    return protocol.EXIT_OK


def cmd_fetch(client: Client, name: str, wait: bool, as_json: bool) -> int:
    job = client.request("POST", f"/v1/sources/{name}/fetch")
    if wait:
        while job["state"] not in protocol.FINAL_STATES:
            time.sleep(0.5)
            job = client.request("GET", f"/v1/jobs/{job['id']}")
    if as_json:
        print(json.dumps(job, indent=2))
    elif job["state"] in protocol.FINAL_STATES:
        print(_result(name, job))
    else:
        print(f"job {job['id']} queued: fetching {name} (`aicoder jobs` shows it)")
    return _EXIT.get(job["state"], protocol.EXIT_OK if not wait else protocol.EXIT_FAILED)


def _line(s: dict[str, Any]) -> str:
    state = "enabled" if s["enabled"] else "disabled"
    counts = (
        f"+{s['added']} ~{s['updated']} ={s['unchanged']} -{s['retired']} !{s['failed']}"
        if s["outcome"]
        else "never ran"
    )
    job = (
        f", job {s['running_job']} {s.get('job_state') or ''}".rstrip() if s["running_job"] else ""
    )
    return (
        f"{s['name']:<16} {s['type']:<8} {s['schedule']:<14} {state:<9}"
        f" last {_when(s['last_run'])} {s['outcome'] or '-':<10} {counts}"
        f"  next {_when(s['next_run'])}{job}"
    )


def summary(s: dict[str, Any]) -> str:
    """One line for ``aicoder status``."""
    if not s["enabled"]:
        return f"{s['name']} ({s['type']}): disabled"
    last = f"{s['outcome']} at {_when(s['last_run'])}" if s["outcome"] else "never ran"
    return f"{s['name']} ({s['type']}): {last}, next {_when(s['next_run'])}"


def _result(name: str, job: dict[str, Any]) -> str:
    result = job.get("result") or {}
    if job["state"] != protocol.SUCCEEDED:
        return f"job {job['id']} {job['state']}: {job.get('error') or 'no reason given'}"
    counts = ", ".join(f"{result.get(k, 0)} {k}" for k in _COUNTS)
    lines = [f"{name}: {result.get('outcome', 'succeeded')} ({counts})"]
    lines += [f"  {e}" for e in result.get("errors", [])]
    return "\n".join(lines)


_COUNTS = ("added", "updated", "unchanged", "retired", "failed")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"
