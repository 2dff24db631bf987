"""``aicoder``: a thin client of the daemon's socket API, one function per command.

Exit statuses: 0 ok, 1 failed, 2 usage or invalid configuration, 3 skipped / not installed,
4 the daemon is not running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aicoderd import __version__, paths, protocol
from aicoderd.cli.client import Client
from aicoderd.errors import AicoderError, ConfigError

Command = Callable[[argparse.Namespace], int]


def resolve_socket(args: argparse.Namespace) -> Path:
    """--socket, then $AICODER_SOCKET, then the config file's ``socket``, then the default."""
    if args.socket:
        return Path(args.socket)
    if os.environ.get("AICODER_SOCKET"):
        return Path(os.environ["AICODER_SOCKET"])
    from aicoderd.config import load_config

    try:
        return load_config(args.config, check_paths=False).socket
    except ConfigError:
        return paths.default_socket()


def _client(args: argparse.Namespace, timeout: float | None = 30.0) -> Client:
    return Client(resolve_socket(args), timeout=timeout)


def _print(args: argparse.Namespace, data: Any, human: Callable[[Any], None]) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        human(data)


def cmd_status(args: argparse.Namespace) -> int:
    data = _client(args).request("GET", "/v1/status")

    def human(s: dict[str, Any]) -> None:
        d = s["documents"]
        print(f"aicoderd {s['version']}, up {s['uptime_s']:.0f} s, watcher {s['watcher']}")
        print(
            f"documents: {d['total']} stored, {d['failed']} refused, {d['retired']} retired,"
            f" {d['pending']} pending"
        )
        for source, n in sorted(d["by_source"].items()):
            print(f"  {source}: {n}")
        print(f"feedback: {s['feedback']['valid']} valid, {s['feedback']['invalid']} invalid")
        running = ", ".join(f"#{j['id']} {j['kind']}" for j in s["jobs"]["running"]) or "none"
        print(f"jobs: {s['jobs']['queued']} queued, running: {running}")
        for f in s["folders"]:
            print(f"folder {f['path']} ({f['mode']}): {f['pending']} pending")

    _print(args, data, human)
    return protocol.EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    paths_ = [str(Path(p).expanduser().absolute()) for p in args.paths]
    missing = [p for p in paths_ if not os.path.lexists(p)]
    if missing:
        print(f"aicoder: no such file: {', '.join(missing)}", file=sys.stderr)
        return protocol.EXIT_USAGE
    data = _client(args, timeout=None).request("POST", "/v1/ingest", body={"paths": paths_})
    outcomes = data["outcomes"]

    def human(_: Any) -> None:
        for o in outcomes:
            extra = f" ({o['reason']}: {o['message']})" if o["reason"] else ""
            print(f"{o['status']:<9} {o['path']}{extra}")

    _print(args, data, human)
    refused = any(o["status"] == "refused" for o in outcomes)
    return protocol.EXIT_FAILED if refused else protocol.EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "cancel":
        job = client.request("DELETE", f"/v1/jobs/{args.id}")
        _print(args, job, lambda j: print(f"job {j['id']} {j['kind']}: {j['state']}"))
        return protocol.EXIT_OK
    if args.action == "submit":
        params = json.loads(args.params) if args.params else {}
        job = client.request("POST", "/v1/jobs", body={"kind": args.kind, "params": params})
        if args.wait:
            job = _wait(client, job["id"])
        _print(args, job, _print_job)
        return {protocol.FAILED: 1, protocol.SKIPPED: 3}.get(job["state"], 0)
    data = client.request("GET", "/v1/jobs", params={"state": args.state} if args.state else {})

    def human(d: dict[str, Any]) -> None:
        for j in d["jobs"]:
            _print_job(j)

    _print(args, data, human)
    return protocol.EXIT_OK


def _print_job(j: dict[str, Any]) -> None:
    progress = j.get("progress") or {}
    step = f" {progress.get('step')}/{progress.get('total')}" if "step" in progress else ""
    error = f" — {j['error']}" if j.get("error") else ""
    print(f"#{j['id']:<5} {j['kind']:<20} {j['state']:<10}{step}{error}")


def _wait(client: Client, job_id: int) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.request("GET", f"/v1/jobs/{job_id}")
        if job["state"] in protocol.FINAL_STATES:
            return job
        time.sleep(0.5)


def cmd_events(args: argparse.Namespace) -> int:
    params = {"since": args.since, "follow": "1" if args.follow else "0"}
    try:
        for event in _client(args, timeout=None).stream("/v1/events", params):
            if args.json:
                print(json.dumps(event), flush=True)
            else:
                when = time.strftime("%H:%M:%S", time.localtime(event.pop("time")))
                seq, type_ = event.pop("seq"), event.pop("type")
                job = event.pop("job_id")
                rest = " ".join(f"{k}={v}" for k, v in event.items() if v is not None)
                print(f"{seq:>6} {when} {type_}{f' job={job}' if job else ''} {rest}", flush=True)
    except KeyboardInterrupt:
        pass
    return protocol.EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    data = _client(args).request("POST", "/v1/reload")
    _print(args, data, lambda d: print("configuration reloaded"))
    return protocol.EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from aicoderd.cli import doctor

    checks = doctor.run_checks(args.config, Path(args.socket) if args.socket else None)
    if args.json:
        print(json.dumps([vars(c) for c in checks], indent=2))
    else:
        for c in checks:
            fix = f"\n{'':<12}fix: {c.fix}" if c.fix and c.level != "ok" else ""
            print(f"{c.level:<8}{c.name:<12}{c.detail}{fix}")
    return protocol.EXIT_FAILED if any(c.level == "problem" for c in checks) else 0


def cmd_service(args: argparse.Namespace) -> int:
    from aicoderd.cli import service

    if args.action == "install":
        lines = service.install(args.config, start=not args.no_start)
    elif args.action == "uninstall":
        lines = service.uninstall()
    else:
        code, out = service.status()
        print(out)
        return code
    print("\n".join(lines))
    return protocol.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aicoder", description="Control aicoderd.")
    p.add_argument("--socket", help="the daemon's socket (default from the config)")
    p.add_argument(
        "--config", type=Path, help="config file (default $XDG_CONFIG_HOME/aicoderd/config.yaml)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--version", action="version", version=f"aicoder {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="daemon status").set_defaults(func=cmd_status)
    ing = sub.add_parser("ingest", help="hand files or folders to the daemon (copied)")
    ing.add_argument("paths", nargs="+")
    ing.set_defaults(func=cmd_ingest)
    jobs = sub.add_parser("jobs", help="list, submit or cancel jobs")
    jobs.add_argument("--state", choices=protocol.JOB_STATES)
    jobs.set_defaults(func=cmd_jobs, action="list")
    jsub = jobs.add_subparsers(dest="action")
    cancel = jsub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("id", type=int)
    submit = jsub.add_parser("submit", help="queue a job of a registered kind")
    submit.add_argument("kind")
    submit.add_argument("--params", help="JSON object of parameters")
    submit.add_argument("--wait", action="store_true", help="wait until it ends")
    ev = sub.add_parser("events", help="show events")
    ev.add_argument("-f", "--follow", action="store_true", help="keep streaming")
    ev.add_argument("--since", type=int, default=0, help="only events after this sequence")
    ev.set_defaults(func=cmd_events)
    sub.add_parser("reload", help="reload the daemon's configuration").set_defaults(func=cmd_reload)
    sub.add_parser("doctor", help="check the installation").set_defaults(func=cmd_doctor)
    svc = sub.add_parser("service", help="manage the systemd user unit")
    svc.add_argument("action", choices=["install", "uninstall", "status"])
    svc.add_argument("--no-start", action="store_true", help="install: only write the unit")
    svc.set_defaults(func=cmd_service)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
