"""Deploying a GGUF into Ollama, by its real API.

Each deploy creates ``<model>:<version>`` and moves ``<model>:latest`` onto it (``/api/copy``:
the same manifest, so the same digest). With ``replace`` it instead overwrites an existing
model, after copying it to ``<model>-backup-<timestamp>``. The template, stop tokens and
chat template all come from :mod:`aicoderd.training.prompt`, the one prompt format. Listing
the deployed versions and moving ``:latest`` back: :mod:`aicoderd.ollama.versions`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aicoderd.errors import CreateFailed, CreateIncomplete, OllamaError
from aicoderd.export import constants as EC
from aicoderd.gguf_types import ollama_quantize_name
from aicoderd.ollama import ggufinfo, names
from aicoderd.ollama.blobs import BlobUpload
from aicoderd.ollama.blobs import Progress as BytesProgress
from aicoderd.ollama.client import Client
from aicoderd.training import prompt

if TYPE_CHECKING:
    from aicoderd.config import Settings

MIN_VERSION = "0.5.5"
QUANTIZABLE_SOURCES = ("F16", "BF16")  # all-F32 (file type 0) reads as "unknown"
GGUF_FILE_KEY = "model.gguf"
Status = Callable[[dict[str, Any]], None]


@dataclass
class DeployOptions:
    name: str  # NAME or NAME:TAG; without a tag the version becomes the tag
    version: str | None = None
    system: str = ""
    license: str | None = None
    num_ctx: int | None = None  # None: the trained context from the GGUF
    quantize: str | None = None
    replace: str | None = None  # an existing model to overwrite (backed up first)
    min_version: str = MIN_VERSION
    check_generate: bool = True
    extra_parameters: dict[str, Any] = field(default_factory=dict)
    # another model's prompt template; its parameters are then extra_parameters alone (None:
    # the project's prompt format, its stop tokens and the trained context)
    template: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DeployOptions:
        o = settings.ollama
        return cls(
            name=o.model,
            system=o.system,
            license=o.license,
            num_ctx=o.num_ctx,
            quantize=o.quantize,
            replace=o.replace,
            min_version=o.min_version,
            check_generate=o.check_generate,
        )

    def named(self, name: str | None) -> DeployOptions:
        """Under an explicit ``name``, which never overwrites ``ollama.replace``."""
        return self if not name else replace(self, name=name, replace=None)


def parse_version(text: str) -> tuple[int, int, int]:
    """``0.32.15`` → (0, 32, 15); a dev build's ``0.0.0`` counts as the newest."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if not m:
        raise OllamaError(f"cannot read Ollama's version {text!r}")
    v = (int(m[1]), int(m[2]), int(m[3]))
    return (1 << 30, 0, 0) if v == (0, 0, 0) else v


def check_version(client: Client, minimum: str = MIN_VERSION) -> str:
    version = client.version()
    if parse_version(version) < parse_version(minimum):
        raise OllamaError(
            f"Ollama {version} is too old: the JSON create API needs {minimum} or newer"
        )
    return version


def tag_for(version: str) -> str:
    """A model version as a tag Ollama will not misread (lower-case, no cloud/local)."""
    tag = re.sub(r"[^a-z0-9._-]+", "-", version.lower()).strip("-._")[:80] or "v"
    if not tag[0].isalnum():
        tag = "v" + tag
    if tag in ("cloud", "local") or tag.endswith("-cloud"):
        tag += "-v"
    return names.check_own_tag(tag)


def create_request(
    name: str, digest: str, header: ggufinfo.Header, opts: DeployOptions
) -> dict[str, Any]:
    trained = header.kv.get(EC.KEY_CONTEXT) or header.kv.get(
        f"{header.architecture}.context_length"
    )
    parameters: dict[str, Any] = dict(opts.extra_parameters)
    if opts.template is None:
        parameters = {"stop": list(prompt.STOP_TOKENS), **parameters}
        num_ctx = opts.num_ctx or trained
        if num_ctx:
            parameters["num_ctx"] = int(num_ctx)
    request: dict[str, Any] = {
        "model": name,
        "files": {GGUF_FILE_KEY: digest},
        "template": prompt.ollama_template() if opts.template is None else opts.template,
        "parameters": parameters,
    }
    if opts.system:
        request["system"] = opts.system
    if opts.license:
        request["license"] = opts.license
    quantize = _quantize_target(header, opts)
    if quantize:
        request["quantize"] = quantize
    return request


def _quantize_target(header: ggufinfo.Header, opts: DeployOptions) -> str | None:
    wanted = opts.quantize or header.kv.get(EC.KEY_OLLAMA_QUANTIZE)
    if not wanted:
        return None
    try:
        target = ollama_quantize_name(str(wanted))
    except ValueError as exc:
        raise OllamaError(str(exc)) from None
    if header.file_type not in QUANTIZABLE_SOURCES:
        raise OllamaError(
            f"Ollama quantizes only F16 or BF16 GGUFs; this one is {header.file_type}"
            " (export with --type f16, or quantize with llama.cpp)"
        )
    return target


def deploy_gguf(
    client: Client,
    gguf_path: Path,
    opts: DeployOptions,
    on_status: Status | None = None,
    on_bytes: BytesProgress | None = None,
) -> dict[str, Any]:
    """Upload ``gguf_path`` and create the model; returns what was done."""
    status = on_status or (lambda _msg: None)
    ollama_version = check_version(client, opts.min_version)
    header = ggufinfo.read_file(str(gguf_path))
    requested = names.parse(opts.replace or opts.name)
    version = opts.version or str(header.kv.get(EC.KEY_VERSION) or time.strftime("%Y%m%d-%H%M%S"))
    explicit_tag = ":" in (opts.replace or opts.name).rsplit("/", 1)[-1]
    target = requested if (opts.replace or explicit_tag) else requested.with_tag(tag_for(version))
    request = create_request(target.display, "", header, opts)  # validates quantize early

    upload = BlobUpload(client, gguf_path)
    upload.hash(on_bytes)
    digest = upload.ensure(on_bytes)
    request["files"] = {GGUF_FILE_KEY: digest}

    backup = None
    if opts.replace and client.show(target.display) is not None:
        stamp = time.strftime("%Y%m%d%H%M%S")
        backup = names.Name(
            target.host, target.namespace, f"{target.model}-backup-{stamp}", target.tag
        )
        client.copy(target.display, backup.display)
        status({"status": f"backed up {target.display} as {backup.display}"})
    if client.loaded(target.display):
        client.unload(target.display)
    upload.ensure()  # re-HEAD just before create: a restart may have pruned the blob
    statuses = _create(client, request, status)
    moved = None
    if not opts.replace and target.tag != names.DEFAULT_TAG:
        latest = target.with_tag(names.DEFAULT_TAG)
        if client.loaded(latest.display):
            client.unload(latest.display)  # after the copy it could no longer be unloaded
        client.copy(target.display, latest.display)
        moved = latest.display
    shown = confirm(client, target.display, header, opts.check_generate)
    return {
        "name": target.display,
        "latest": moved,
        "backup": backup.display if backup else None,
        "digest": digest,
        "uploaded_bytes": upload.uploaded_bytes,
        "ollama_version": ollama_version,
        "quantize": request.get("quantize"),
        "parameters": request["parameters"],
        "statuses": statuses,
        **shown,
    }


def _create(client: Client, request: dict[str, Any], status: Status) -> list[str]:
    """``/api/create``; an unknown outcome is retried once (create is idempotent), and an
    error after the manifest was written (removing old layers failed) is checked with
    ``/api/show``."""
    try:
        return client.create(request, status)
    except CreateIncomplete:
        status({"status": "create ended without an outcome; creating again"})
        return client.create(request, status)
    except CreateFailed as exc:
        if "writing manifest" in exc.statuses and client.show(request["model"]) is not None:
            status({"status": f"create reported {exc} after writing the manifest; model exists"})
            return exc.statuses
        raise OllamaError(f"Ollama refused {request['model']}: {exc}") from exc


def confirm(client: Client, name: str, header: ggufinfo.Header, generate: bool) -> dict[str, Any]:
    shown = client.show(name)
    if shown is None:
        raise OllamaError(f"{name} is not in Ollama after create")
    family = (shown.get("details") or {}).get("family")
    if family != header.architecture:
        raise OllamaError(f"{name}: Ollama reports family {family!r}, not {header.architecture!r}")
    if not shown.get("template"):
        raise OllamaError(f"{name} has no template in Ollama")
    result: dict[str, Any] = {"details": shown.get("details")}
    if generate:
        out = client.generate(
            name, "def add(a, b):\n", {"num_predict": 8, "temperature": 0, "seed": 1}
        )
        if not out.get("done"):
            raise OllamaError(f"{name}: a short generation did not finish: {out}")
        result["sample"] = out.get("response", "")
    return result
