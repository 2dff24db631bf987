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

from aicoderd import __version__, log, paths, protocol
from aicoderd.cli import sources as sources_cli
from aicoderd.cli.client import Client
from aicoderd.errors import AicoderError, ConfigError
from aicoderd.gguf_types import OLLAMA_QUANTIZE

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
        for src in s.get("sources", []):
            print(f"source {sources_cli.summary(src)}")
        if c := s.get("corpus"):
            snapshot = c["snapshot"] or "none yet"
            print(
                f"corpus: snapshot {snapshot}, {c['documents']} documents,"
                f" ~{c['tokens_estimate']:,} tokens"
            )
        if p := s.get("pipeline"):
            print(f"model: {p['current_model'] or 'none yet'}")
            for stage in ("train", "finetune", "eval", "export", "deploy"):
                st = p[stage]
                detail = f" #{st['job_id']}" if st["job_id"] else ""
                detail += f": {st['waiting_for']}" if st["waiting_for"] else ""
                print(f"  {stage}: {st['state']}{detail}")

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


def cmd_sources(args: argparse.Namespace) -> int:
    """``sources [--json]`` and ``fetch NAME [--wait]`` (aicoderd/cli/sources.py)."""
    return sources_cli.run(args, _client(args))


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


def cmd_corpus(args: argparse.Namespace) -> int:
    """Standalone stage command: no daemon. The build module loads numpy and ``datasets``, so
    it is imported by name here, only when a build runs (the CLI never imports them at start)."""
    import importlib

    from aicoderd.config import load_config
    from aicoderd.corpus import snapshot

    as_json = args.json or args.corpus_json
    settings = load_config(args.config, check_paths=False)
    if args.action == "build":
        missing = [p for p in args.input if not os.path.lexists(p)]
        if missing:
            print(f"aicoder: no such file: {', '.join(missing)}", file=sys.stderr)
            return protocol.EXIT_USAGE
        corpus_cli = importlib.import_module("aicoderd.corpus.cli")
        manifest = corpus_cli.build(
            [Path(p) for p in args.input], Path(args.out), settings, full=args.full, quiet=as_json
        )
        if manifest is None:
            manifest = snapshot.read_manifest(Path(args.out))
            if not as_json:
                print(f"corpus in {args.out} is up to date")
    else:
        root = Path(args.dir) if args.dir else settings.corpus_dir
        manifest = snapshot.read_manifest(root)
        if manifest is None:
            print(f"aicoder: no corpus snapshot in {root}", file=sys.stderr)
            return protocol.EXIT_FAILED
        if args.removed:
            removed = list(snapshot.read_removed(root))
            if as_json:
                print(json.dumps(removed, indent=2))
            else:
                for r in removed:
                    print(f"{r['reason']:<28} {r['uri']}  {r['detail'] or ''}")
            return protocol.EXIT_OK
    if as_json:
        print(json.dumps(manifest, indent=2))
    elif manifest is not None:
        _print_corpus(manifest)
    return protocol.EXIT_OK


def cmd_training(args: argparse.Namespace) -> int:
    """Standalone ``train`` / ``finetune`` / ``eval``: torch loads here, by module name, only
    when one of them runs."""
    import importlib

    from aicoderd.config import load_config

    settings = load_config(args.config, check_paths=False)
    args.json = args.json or args.training_json
    training_cli = importlib.import_module("aicoderd.training.cli")
    code: int = getattr(training_cli, args.training_action)(args, settings)
    return code


def cmd_stage(args: argparse.Namespace) -> int:
    """Standalone ``export`` / ``deploy`` / ``models`` / ``rollback``: gguf, torch and
    llama_cpp load inside these modules, imported by name only when a command runs."""
    import importlib

    from aicoderd.config import load_config

    settings = load_config(args.config, check_paths=False)
    args.json = args.json or args.stage_json
    module = importlib.import_module(args.stage_module)
    code: int = getattr(module, args.stage_action)(args, settings)
    return code


def _print_corpus(m: dict[str, Any]) -> None:
    print(
        f"snapshot {m['snapshot']} ({m['created']}): {m['documents']} documents,"
        f" {m['bytes']} bytes, ~{m['tokens_estimate']} tokens"
    )
    for name, split in m["splits"].items():
        print(f"  {name}: {split['documents']} documents, {split['bytes']} bytes")
    removed = ", ".join(f"{k} {v}" for k, v in m["removed"].items()) or "none"
    print(f"removed: {removed}")
    redactions = ", ".join(f"{k} {v}" for k, v in m["redactions"].items()) or "none"
    print(f"redactions: {redactions}")


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
    sources_cli.add_parsers(sub, cmd_sources)
    sub.add_parser("doctor", help="check the installation").set_defaults(func=cmd_doctor)
    corpus = sub.add_parser("corpus", help="build or inspect a training corpus (no daemon)")
    csub = corpus.add_subparsers(dest="action", required=True)
    cbuild = csub.add_parser("build", help="clean, redact, de-duplicate files into a corpus")
    cbuild.add_argument("--input", nargs="+", required=True, help="files or folders")
    cbuild.add_argument("--out", required=True, help="the corpus directory (built incrementally)")
    cbuild.add_argument("--full", action="store_true", help="forget earlier decisions")
    cstats = csub.add_parser("stats", help="what the current snapshot holds")
    cstats.add_argument("dir", nargs="?", help="corpus directory (default: data_dir/corpus)")
    cstats.add_argument("--removed", action="store_true", help="list every removed document")
    for p_ in (cbuild, cstats):
        # --json here too: `aicoder corpus stats --json` reads naturally
        p_.add_argument("--json", dest="corpus_json", action="store_true", help="print JSON")
    corpus.set_defaults(func=cmd_corpus)
    train = sub.add_parser("train", help="train a tokenizer and a model from scratch (no daemon)")
    train.add_argument("--corpus", required=True, help="corpus directory (aicoder corpus build)")
    train.add_argument("--out", required=True, help="the model directory")
    train.add_argument("--preset", choices=["tiny", "small", "base"], help="model size")
    train.add_argument("--max-steps", type=int, help="optimizer steps (default from config)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.set_defaults(func=cmd_training, training_action="train")
    ft = sub.add_parser("finetune", help="finetune a model on review feedback (no daemon)")
    ft.add_argument("--base", required=True, help="model directory (or version) to start from")
    ft.add_argument("--feedback", nargs="+", required=True, help="feedback JSONL files")
    ft.add_argument("--out", required=True, help="the finetuned model directory")
    ft.add_argument("--corpus", help="corpus for replay (default: the base model's)")
    ft.add_argument("--max-steps", type=int, help="finetuning steps (default from config)")
    ft.set_defaults(func=cmd_training, training_action="finetune")
    gate = sub.add_parser("eval", help="evaluate a model; with --against, apply the gate")
    gate.add_argument("model", help="model directory (or version)")
    gate.add_argument("--against", help="the current model: promote only if not worse")
    gate.add_argument("--corpus", help="corpus whose eval split is used (default: the model's)")
    gate.add_argument("--feedback", nargs="+", help="feedback files (default from config)")
    gate.set_defaults(func=cmd_training, training_action="evaluate")
    for p_ in (train, ft, gate):
        p_.add_argument("--json", dest="training_json", action="store_true", help="print JSON")
    _add_stage_parsers(sub)
    svc = sub.add_parser("service", help="manage the systemd user unit")
    svc.add_argument("action", choices=["install", "uninstall", "status"])
    svc.add_argument("--no-start", action="store_true", help="install: only write the unit")
    svc.set_defaults(func=cmd_service)
    return p


def _add_stage_parsers(sub: Any) -> None:
    ex = sub.add_parser("export", help="convert a model directory to GGUF (no daemon)")
    ex.add_argument("model_dir", help="an HF model directory (save_pretrained)")
    ex.add_argument("-o", "--output", required=True, help="the GGUF file to write")
    ex.add_argument("--type", help="f32 f16 bf16 q8_0 q4_0 … q4_k_m (default from config)")
    ex.add_argument("--verify", action="store_true", help="check parity with llama.cpp")
    ex.add_argument("--converter", choices=["builtin", "llamacpp"], default="builtin")
    ex.add_argument("--model-name", help="general.name (default: the directory's name)")
    ex.add_argument("--model-version", help="general.version (default: the directory's name)")
    ex.set_defaults(stage_module="aicoderd.export.cli", stage_action="export")
    dep = sub.add_parser("deploy", help="import a GGUF (or export a model) into Ollama")
    dep.add_argument("source", help="a .gguf file, or a model directory to export first")
    dep.add_argument("--name", help="NAME[:TAG] (default: ollama.model, tagged by version)")
    dep.add_argument("--quantize", type=str.lower, choices=OLLAMA_QUANTIZE, help="by Ollama")
    dep.add_argument("--force", action="store_true", help="deploy a GGUF not verified in llama.cpp")
    dep.set_defaults(stage_module="aicoderd.ollama.cli", stage_action="deploy")
    mod = sub.add_parser("models", help="the deployed versions in Ollama, with metrics")
    mod.add_argument("--name", help="model name (default: ollama.model)")
    mod.set_defaults(stage_module="aicoderd.ollama.cli", stage_action="models")
    rb = sub.add_parser("rollback", help="point <model>:latest back to an earlier version")
    rb.add_argument("version", nargs="?", help="default: the version before the current")
    rb.add_argument("--name", help="model name (default: ollama.model)")
    rb.set_defaults(stage_module="aicoderd.ollama.cli", stage_action="rollback")
    for p_ in (ex, dep, mod, rb):
        p_.add_argument("--json", dest="stage_json", action="store_true", help="print JSON")
        p_.set_defaults(func=cmd_stage)


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
