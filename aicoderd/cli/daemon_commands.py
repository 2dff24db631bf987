"""The commands that talk to the running daemon (and to the service that runs it): thin
clients of the socket API, one function per command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from aicoderd import protocol
from aicoderd.cli import render
from aicoderd.cli import sources as sources_cli
from aicoderd.cli.common import JSON_OPTION, client, emit
from aicoderd.daemon import schemas

STAGES = ("train", "finetune", "eval", "export", "deploy")


def register(sub: Any) -> None:
    def add(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[JSON_OPTION])
        p.set_defaults(func=func)
        return p

    add("status", "what the daemon holds, runs and waits for", cmd_status)
    ingest = add("ingest", "hand files or folders to the daemon (copied)", cmd_ingest)
    ingest.add_argument("paths", nargs="+")
    jobs = add("jobs", "list, submit, cancel jobs, or show a job's log", cmd_jobs)
    jobs.add_argument("--state", choices=protocol.JOB_STATES)
    jobs.set_defaults(action="list")
    jsub = jobs.add_subparsers(dest="action")
    cancel = jsub.add_parser("cancel", help="cancel a job", parents=[JSON_OPTION])
    cancel.add_argument("id", type=int)
    submit = jsub.add_parser("submit", help="queue a job of a known kind", parents=[JSON_OPTION])
    submit.add_argument("kind")
    submit.add_argument("--params", help="JSON object of parameters")
    submit.add_argument("--wait", action="store_true", help="wait until it ends")
    log = jsub.add_parser("log", help="what the job's process logged")
    log.add_argument("id", type=int)
    log.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    events = add("events", "show events", cmd_events)
    events.add_argument("-f", "--follow", action="store_true", help="keep streaming")
    events.add_argument("--since", type=int, default=0, help="only events after this sequence")
    add("reload", "reload the daemon's configuration", cmd_reload)
    add("sources", "scheduled sources: last run, counts, next run", cmd_sources)
    fetch = add("fetch", "fetch a source now (enabled or not)", cmd_sources)
    fetch.add_argument("name")
    fetch.add_argument("--wait", action="store_true", help="wait until it ends (exit 1: failed)")
    add("doctor", "check the installation", cmd_doctor)
    service = add("service", "manage the systemd user unit", cmd_service)
    service.add_argument("action", choices=["install", "uninstall", "status"])
    service.add_argument("--no-start", action="store_true", help="install: only write the unit")


# -- status ----------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    data = client(args).request("GET", "/v1/status")
    emit(args, data, lambda d: print("\n".join(status_lines(schemas.Status.model_validate(d)))))
    return protocol.EXIT_OK


def status_lines(s: schemas.Status) -> list[str]:
    d = s.documents
    out = [
        f"aicoderd {s.version}, up {render.duration(s.uptime_s)}, watcher {s.watcher}",
        f"documents: {d.total:,} stored, {d.failed:,} refused, {d.retired:,} retired,"
        f" {d.pending:,} pending",
    ]
    out += [f"  {source}: {n:,}" for source, n in sorted(d.by_source.items())]
    out.append(f"feedback: {s.feedback.valid:,} valid, {s.feedback.invalid:,} invalid")
    out += [f"  {source}: {n:,}" for source, n in sorted(s.feedback.by_source.items())]
    running = {j.id: j for j in s.jobs.running}
    out.append(f"jobs: {s.jobs.queued} queued, {len(running)} running")
    out += [f"  #{j.id} {j.kind}: {render.progress(j.progress)}" for j in running.values()]
    out += [f"folder {f.path} ({f.mode}): {f.pending:,} pending" for f in s.folders]
    out += [f"source {sources_cli.summary(src.model_dump())}" for src in s.sources]
    if c := s.corpus:
        out.append(
            f"corpus: snapshot {c.snapshot or 'none yet'}, {c.documents:,} documents,"
            f" ~{render.number(c.tokens_estimate)} tokens"
        )
    if p := s.pipeline:
        out += _pipeline_lines(p, running)
    return out


def _pipeline_lines(p: schemas.PipelineStatus, running: dict[int, schemas.RunningJob]) -> list[str]:
    out = []
    if p.corpus is not None:
        out.append(f"  corpus build: {_stage(p.corpus, running)}")
    model = p.current_model or "none yet"
    if p.loss_plot:
        model += f" (loss plot: {p.loss_plot})"
    out.append(f"model: {model}")
    if p.current_metrics is not None:
        from aicoderd.ollama.versions import quality_line

        out.append(f"  figures: {quality_line(p.current_metrics.model_dump())}")
    if g := p.gate:
        verdict = "passed" if g.passed else "refused"
        out.append(f"  last gate (job #{g.job_id}, {g.model}): {verdict}: {g.reason}")
    for name in STAGES:
        out.append(f"  {name}: {_stage(getattr(p, name), running)}")
    if p.adapt is not None:
        out.append(f"  adapt: {_stage(p.adapt, running)}")
    return out


def _stage(st: schemas.PipelineStage, running: dict[int, schemas.RunningJob]) -> str:
    text = st.state
    if st.job_id:
        text += f" #{st.job_id}"
        job = running.get(st.job_id)
        if job is not None:
            text += f": {render.progress(job.progress)}"
    if st.waiting_for:
        text += f": {st.waiting_for}"
    if st.in_s is not None:
        text += f" (in {render.duration(st.in_s)})"
    return text


# -- ingest, jobs, events, reload --------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    paths_ = [str(Path(p).expanduser().absolute()) for p in args.paths]
    missing = [p for p in paths_ if not os.path.lexists(p)]
    if missing:
        print(f"aicoder: no such file: {', '.join(missing)}", file=sys.stderr)
        return protocol.EXIT_USAGE
    data = client(args, timeout=None).request("POST", "/v1/ingest", body={"paths": paths_})
    outcomes = data["outcomes"]

    def human(_: Any) -> None:
        for o in outcomes:
            extra = f" ({o['reason']}: {o['message']})" if o["reason"] else ""
            print(f"{o['status']:<9} {o['path']}{extra}")

    emit(args, data, human)
    refused = any(o["status"] == "refused" for o in outcomes)
    return protocol.EXIT_FAILED if refused else protocol.EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    api = client(args)
    if args.action == "cancel":
        job = api.request("DELETE", f"/v1/jobs/{args.id}")
        emit(args, job, lambda j: print(f"job {j['id']} {j['kind']}: {j['state']}"))
        return protocol.EXIT_OK
    if args.action == "submit":
        params = _params(args.params)
        job = api.request("POST", "/v1/jobs", body={"kind": args.kind, "params": params})
        if args.wait:
            job = _wait(api, job["id"])
        emit(args, job, lambda j: print(job_line(j)))
        return _JOB_EXIT.get(job["state"], protocol.EXIT_OK)
    if args.action == "log":
        return _log(api, args.id, args.follow)
    data = api.request("GET", "/v1/jobs", params={"state": args.state} if args.state else {})
    emit(args, data, lambda d: print("\n".join(job_line(j) for j in d["jobs"])))
    return protocol.EXIT_OK


_JOB_EXIT = {protocol.FAILED: protocol.EXIT_FAILED, protocol.SKIPPED: protocol.EXIT_SKIPPED}


def _params(text: str | None) -> dict[str, Any]:
    import json

    from aicoderd.errors import BadRequest

    try:
        params = json.loads(text) if text else {}
    except ValueError as exc:
        raise BadRequest(f"--params is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise BadRequest("--params must be a JSON object")
    return params


def job_line(j: dict[str, Any]) -> str:
    detail = ""
    if j["state"] == protocol.RUNNING:
        detail = f" {render.progress(j.get('progress'))}"
    elif j.get("error"):
        detail = f" — {j['error']}"
    return f"#{j['id']:<5} {j['kind']:<16} {j['state']:<10}{detail}"


def _wait(api: Any, job_id: int) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = api.request("GET", f"/v1/jobs/{job_id}")
        if job["state"] in protocol.FINAL_STATES:
            return job
        time.sleep(0.5)


def _log(api: Any, job_id: int, follow: bool) -> int:
    offset = 0
    while True:
        job = api.request("GET", f"/v1/jobs/{job_id}")
        resp = api.raw("GET", f"/v1/jobs/{job_id}/log", params={"offset": offset})
        sys.stdout.buffer.write(resp.content)
        sys.stdout.flush()
        offset = int(resp.headers.get("X-Log-Size", offset))
        if not follow or (job["state"] in protocol.FINAL_STATES and not resp.content):
            return protocol.EXIT_OK
        time.sleep(0.5)


def cmd_events(args: argparse.Namespace) -> int:
    params = {"since": args.since, "follow": "1" if args.follow else "0"}
    try:
        for event in client(args, timeout=None).stream("/v1/events", params):
            if args.json:
                import json

                print(json.dumps(event), flush=True)
                continue
            when = time.strftime("%H:%M:%S", time.localtime(event.pop("time")))
            seq, type_, job = event.pop("seq"), event.pop("type"), event.pop("job_id")
            rest = render.fields(event)
            print(f"{seq:>6} {when} {type_}{f' job={job}' if job else ''} {rest}", flush=True)
    except KeyboardInterrupt:
        pass
    return protocol.EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    data = client(args).request("POST", "/v1/reload")
    emit(args, data, lambda d: print("configuration reloaded"))
    return protocol.EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    """``sources`` and ``fetch NAME [--wait]`` (aicoderd/cli/sources.py)."""
    api = client(args)
    if args.command == "sources":
        return sources_cli.cmd_sources(api, args.json)
    return sources_cli.cmd_fetch(api, args.name, args.wait, args.json)


# -- the installation --------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

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
        code, lines = service.install(args.config, start=not args.no_start)
    elif args.action == "uninstall":
        code, lines = service.uninstall()
    else:
        code, lines = service.status()
    print("\n".join(lines))
    return code
