"""A fake Ollama for tests: a real HTTP/1.1 server on loopback that enforces the rules of
Ollama's server — digest format and verification, an early 200 for a known blob,
real GGUF header parsing, the name grammar, quantize eligibility, NDJSON with in-stream errors,
version branches — with hooks to inject failures (a reset during upload, a create stream that
ends without ``success``, an error after the manifest, a slow create). Models live as Ollama
keeps them, manifests and blobs on disk (``pull`` places one as ``ollama pull`` would), and
``/api/create`` takes ``from`` an existing model with ``adapters`` (refused when
``adapters_refused``, as newer Ollama versions are reported to do).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aicoderd.ollama.testing import ggufheader, gotemplate, modelnames
from aicoderd.ollama.testing.modelnames import ModelName

DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
QUANT_NEW = ("F32", "F16", "BF16", "Q8_0", "Q4_K_S", "Q4_K_M", "Q4_K")
QUANT_SOURCES = ("F16", "BF16", "F32")
ZERO_DIGEST = "0000000000000000000"
INT_OPTS = ("num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch")
FLOAT_OPTS = ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty")
MEDIA = "application/vnd.ollama.image."
MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"
# What the fake answers when adapters are refused (the real wording is not known).
ADAPTERS_REFUSED = "adapters are no longer supported; merge the adapter into the model"


class HTTPFail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Faults:
    """Failure injection; counters count down per occurrence."""

    reset_upload_after: int | None = None  # bytes read before the connection is reset
    reset_uploads: int = 0  # how many uploads are reset
    create_no_success: int = 0  # create streams that end without success
    error_after_manifest: int = 0  # creates that fail after writing the manifest
    create_delay: float = 0.0  # seconds between create status lines
    generate_error: str | None = None  # an in-stream error during generation
    # runs once before the next blob POST is handled (e.g. another client's upload landing)
    before_blob_post: Callable[[], None] | None = None


@dataclass
class Manifest:
    layers: list[dict[str, Any]]
    config: dict[str, Any]
    modified: float = field(default_factory=time.time)

    def serialized(self) -> bytes:
        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA,
            "config": self.config,
            "layers": self.layers,
        }
        return json.dumps(body, sort_keys=True).encode()


class FakeOllama:
    def __init__(
        self,
        version: str = "0.32.15",
        architectures: tuple[str, ...] = ("llama", "qwen2"),
        root: Path | None = None,
        port: int = 0,  # 0: any free port; a fixed one lets a test start "Ollama" late
    ) -> None:
        self.version = version
        self.port = port
        self.architectures = architectures
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="fake-ollama-")
        self.blobs_dir = (root or Path(self._tmp.name if self._tmp else ".")) / "blobs"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.manifests: dict[tuple[str, ...], Manifest] = {}
        self.display: dict[tuple[str, ...], str] = {}
        self.runners: dict[str, tuple[str, float]] = {}  # blob path → (name, expires)
        self.faults = Faults()
        self.adapters_refused = False  # create with adapters fails (newer Ollama, reportedly)
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self.generated: list[dict[str, Any]] = []  # each /api/generate request, as sent
        self.rendered: list[str] = []  # the prompt each generation ran on, template applied
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeOllama:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def v(self) -> tuple[int, ...]:
        return version_tuple(self.version)

    def restart(self) -> None:
        """A server restart: unreferenced blobs are pruned, runners are gone."""
        with self.lock:
            used = {layer["digest"] for m in self.manifests.values() for layer in m.layers}
            used |= {m.config["digest"] for m in self.manifests.values()}
            for path in self.blobs_dir.iterdir():
                if path.name.replace("-", ":", 1) not in used:
                    path.unlink()
            self.runners.clear()

    # --- state helpers -----------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / digest.replace(":", "-", 1)

    def store_bytes(self, data: bytes) -> tuple[str, bool]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        existed = path.exists()
        if not existed:
            path.write_bytes(data)
        return digest, existed

    @property
    def root(self) -> Path:
        """The models directory (``OLLAMA_MODELS``): ``blobs/`` and ``manifests/``."""
        return self.blobs_dir.parent

    def manifest_path(self, key: tuple[str, ...]) -> Path:
        return self.root.joinpath("manifests", *key)

    def put(self, name: ModelName, manifest: Manifest) -> Manifest | None:
        """Store a manifest under ``name`` (memory and disk, as Ollama writes it); the old one."""
        key = name.key()
        with self.lock:
            old = self.manifests.get(key)
            self.manifests[key] = manifest
            self.display[key] = name.display()
            path = self.manifest_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(manifest.serialized())
            os.replace(tmp, path)
        return old

    def remove(self, key: tuple[str, ...]) -> Manifest:
        with self.lock:
            old = self.manifests.pop(key)
            self.manifest_path(key).unlink(missing_ok=True)
        return old

    def pull(
        self,
        text: str,
        gguf: Path,
        template: str = "",
        system: str = "",
        parameters: dict[str, Any] | None = None,
        license: str = "",
    ) -> str:
        """Place a model as ``ollama pull`` leaves one: its blobs and manifest on disk. Returns
        the model blob's digest."""
        name = modelnames.parse(text)
        digest, _ = self.store_bytes(gguf.read_bytes())
        layers = [_layer(self, "model", digest)]
        for kind, value in (("template", template), ("system", system), ("license", license)):
            if value:
                layers.append(_text_layer(self, kind, value))
        if parameters:
            layers.append(_text_layer(self, "params", json.dumps(parameters)))
        for lay in layers:
            lay.pop("existed")
        header = ggufheader.decode(self.blob_path(digest))
        config_digest = _config_blob(self, header, header.file_type, header.listed_file_type)
        self.put(name, Manifest(layers, _config_ref(self, config_digest)))
        return digest

    def lookup(self, text: str) -> tuple[tuple[str, ...], Manifest] | None:
        key = modelnames.parse(text).key()
        with self.lock:
            m = self.manifests.get(key)
        return (key, m) if m else None


def version_tuple(text: str) -> tuple[int, ...]:
    """``0.32.15`` → (0, 32, 15), ``v0.33.0-rc2`` → (0, 33, 0); a dev build's 0.0.0 is newest."""
    core = text.strip().removeprefix("v").split("-")[0].split("+")[0]
    numbers = tuple(int(part) for part in [*core.split("."), "0", "0"][:3])
    return (10**9,) if not any(numbers) else numbers


def _valid_path(p: str) -> bool:
    parts = p.split("/")
    return bool(p) and not p.startswith("/") and all(x not in ("", ".", "..") for x in parts)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOllama
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    ROUTES: dict[str, dict[str, str]] = {
        "/": {"GET": "root", "HEAD": "root"},
        "/api/version": {"GET": "version", "HEAD": "version"},
        "/api/tags": {"GET": "tags", "HEAD": "tags"},
        "/api/ps": {"GET": "ps"},
        "/api/create": {"POST": "create"},
        "/api/show": {"POST": "show"},
        "/api/copy": {"POST": "copy"},
        "/api/delete": {"DELETE": "delete"},
        "/api/generate": {"POST": "generate"},
    }

    def _dispatch(self) -> None:
        self.fake.requests.append((self.command, self.path))
        path = self.path.split("?", 1)[0]
        if path.startswith("/api/blobs/"):
            route = {"HEAD": "blob_head", "POST": "blob_post"}
        else:
            route = self.ROUTES.get(path, {})
        if not route or self.command not in route:
            for _ in self._body_chunks():  # drain, so the connection stays usable
                pass
            if not route:
                return self._text(404, "404 page not found")
            return self._text(405, "405 method not allowed")
        try:
            getattr(self, "do_" + route[self.command])()
        except HTTPFail as exc:
            self._json(exc.status, {"error": str(exc)})

    do_GET = do_HEAD = do_POST = do_DELETE = _dispatch

    # --- plumbing ----------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _json(self, status: int, obj: Any, close: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8", close)

    def _body_chunks(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                raise ConnectionError("client went away")
            remaining -= len(chunk)
            yield chunk

    def _read_json(self) -> dict[str, Any]:
        raw = b"".join(self._body_chunks())
        if not raw.strip():
            raise HTTPFail(400, "missing request body")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise HTTPFail(400, str(exc)) from None
        if not isinstance(data, dict):
            raise HTTPFail(400, "json: cannot unmarshal into Go value")
        return data

    def _stream_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _line(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream_end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _name(self, text: Any, message: str = "invalid model name") -> ModelName:
        name = modelnames.parse(text) if isinstance(text, str) else None
        if name is None or not name.valid():
            raise HTTPFail(400, message)
        return name

    # --- simple endpoints --------------------------------------------------------------------
    def do_root(self) -> None:
        self._text(200, "Ollama is running")

    def do_version(self) -> None:
        self._json(200, {"version": self.fake.version})

    def do_tags(self) -> None:
        fake, out = self.fake, []
        with fake.lock:
            items = sorted(fake.manifests.items(), key=lambda kv: -kv[1].modified)
            for key, m in items:
                out.append(_list_entry(fake, fake.display[key], m))
        self._json(200, {"models": out})

    def do_ps(self) -> None:
        now = time.time()
        with self.fake.lock:
            models = [
                {"name": name, "model": name, "digest": path, "expires_at": expires}
                for path, (name, expires) in self.fake.runners.items()
                if expires > now
            ]
        self._json(200, {"models": models})

    def do_show(self) -> None:
        req = self._read_json()
        text = req.get("model") or req.get("name")
        if not text:
            raise HTTPFail(400, "model is required")
        name = self._name(text)
        _refuse_cloud(name)
        found = self.fake.lookup(text)
        if found is None:
            raise HTTPFail(404, f"model '{name.display()}' not found")
        self._json(200, _show(self.fake, found[1]))

    def do_copy(self) -> None:
        req = self._read_json()
        src, dst = req.get("source", ""), req.get("destination", "")
        self._name(src, f'source "{src}" is invalid')
        dst_name = self._name(dst, f'destination "{dst}" is invalid')
        found = self.fake.lookup(src)
        if found is None:
            raise HTTPFail(404, f'model "{src}" not found')
        m = found[1]
        self.fake.put(dst_name, Manifest(list(m.layers), dict(m.config)))
        self._send(200, b"", "text/plain")

    def do_delete(self) -> None:
        req = self._read_json()
        text = req.get("model") or req.get("name") or ""
        self._name(text, f'name "{text}" is invalid')
        found = self.fake.lookup(text)
        if found is None:
            raise HTTPFail(404, f"model '{text}' not found")
        with self.fake.lock:
            _gc(self.fake, self.fake.remove(found[0]))
        self._send(200, b"", "text/plain")

    # --- blobs -------------------------------------------------------------------------------
    def do_blob_head(self) -> None:
        digest = self.path.rsplit("/", 1)[1]
        if not DIGEST.match(digest):
            raise HTTPFail(400, "invalid digest format")
        if not self.fake.blob_path(digest).exists():
            raise HTTPFail(404, f'blob "{digest}" not found')
        self._send(200, b"", "text/plain")

    def do_blob_post(self) -> None:
        fake = self.fake
        digest = self.path.rsplit("/", 1)[1]
        if not DIGEST.match(digest):
            return self._json(400, {"error": "invalid digest format"}, close=True)
        hook, fake.faults.before_blob_post = fake.faults.before_blob_post, None
        if hook:
            hook()
        if fake.blob_path(digest).exists():  # known: answer at once, body unread
            return self._send(200, b"", "text/plain", close=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=fake.blobs_dir, prefix="sha256-")
        reset_at = fake.faults.reset_upload_after if fake.faults.reset_uploads > 0 else None
        read = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in self._body_chunks():
                    h.update(chunk)
                    fh.write(chunk)
                    read += len(chunk)
                    if reset_at is not None and read >= reset_at:
                        fake.faults.reset_uploads -= 1
                        self._reset()
                        raise ConnectionError("injected reset")
        except (ConnectionError, OSError, ValueError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if "injected" not in str(exc):
                with contextlib.suppress(OSError):
                    self._json(500, {"error": str(exc)}, close=True)
            self.close_connection = True
            return None
        actual = "sha256:" + h.hexdigest()
        final = fake.blob_path(actual)
        if final.exists():
            os.unlink(tmp)
        else:
            os.replace(tmp, final)
        if actual != digest:
            return self._json(
                400, {"error": f'digest mismatch, expected "{digest}", got "{actual}"'}
            )
        self._send(201, b"", "text/plain")
        return None

    def _reset(self) -> None:
        """Close the connection with RST, as a dying server would."""
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        self.close_connection = True

    # --- create ------------------------------------------------------------------------------
    def do_create(self) -> None:
        fake = self.fake
        req = self._read_json()
        if fake.v < (0, 5, 5):
            raise HTTPFail(400, "path or Modelfile are required")
        files = req.get("files") or {}
        for key, value in files.items():
            if not _valid_path(key):
                raise HTTPFail(400, "file path must be relative")
            if not value:
                raise HTTPFail(400, "invalid digest format")
        name = self._name(req.get("model") or req.get("name"))
        if req.get("from"):
            return self._create_from(name, req)
        if "files" not in req:
            raise HTTPFail(400, "neither 'from' or 'files' was specified")
        gguf_key = next((k for k in sorted(files) if k.endswith(".gguf")), None)
        if gguf_key is None:
            for key in sorted(files):
                path = fake.blob_path(str(files[key]))
                with contextlib.suppress(OSError), open(path, "rb") as fh:
                    if fh.read(4) == ggufheader.MAGIC:
                        gguf_key = key
                        break
        if gguf_key is None:
            raise HTTPFail(400, "unknown type")
        stream = req.get("stream", True) is not False
        lines: list[dict[str, Any]] = []

        def emit(obj: dict[str, Any]) -> None:
            if fake.faults.create_delay:
                time.sleep(fake.faults.create_delay)
            if stream:
                self._line(obj)
            lines.append(obj)

        if stream:
            self._stream_start()
        try:
            _create(fake, name, req, str(files[gguf_key]), emit)
        except HTTPFail as exc:
            if stream:
                self._line({"error": str(exc)})
            else:
                return self._json(exc.status, {"error": str(exc)})
        except _Truncate:
            pass
        if stream:
            return self._stream_end()
        return self._json(200, lines[-1])

    def _create_from(self, name: ModelName, req: dict[str, Any]) -> None:
        """``from`` an existing model: its layers shared, the request's added (no registry
        here: a missing one fails as a pull would)."""
        fake = self.fake
        base = self._name(req["from"])
        found = fake.lookup(base.display())
        if found is None:
            raise HTTPFail(500, "pull model manifest: file does not exist")
        adapters = req.get("adapters") or {}
        if len(adapters) > 1:
            raise HTTPFail(400, "only one adapter is currently supported")
        self._stream_start()
        try:
            for line in _create_from(fake, name, found[1], req, adapters):
                self._line(line)
        except HTTPFail as exc:
            self._line({"error": str(exc)})
        self._stream_end()

    # --- generate ----------------------------------------------------------------------------
    def do_generate(self) -> None:
        """Ollama's ``GenerateHandler``: raw checks, the insert capability (a template that
        uses ``.Suffix``) before a load, then the prompt rendered as Ollama renders it."""
        fake = self.fake
        req = self._read_json()
        fake.generated.append(req)
        name = self._name(req.get("model"))
        _refuse_cloud(name)
        found = fake.lookup(name.display())
        if found is None:
            raise HTTPFail(404, f"model '{name.display()}' not found")
        m = found[1]
        if req.get("raw") and (req.get("template") or req.get("system") or req.get("context")):
            raise HTTPFail(400, "raw mode does not support template, system, or context")
        template = _text(fake, m, "template")
        if req.get("suffix") and "Suffix" not in gotemplate.fields(template):
            full = f"{name.host}/{name.namespace}/{name.model}:{name.tag}"
            raise HTTPFail(400, f"{full} does not support insert")
        blob = next(lay["digest"] for lay in m.layers if lay["mediaType"] == MEDIA + "model")
        now = datetime.now(UTC).isoformat()
        keep = req.get("keep_alive")
        if not req.get("prompt"):
            with fake.lock:
                if keep == 0:
                    fake.runners.pop(blob, None)
                    reason = "unload"
                else:
                    fake.runners[blob] = (fake.display[found[0]], time.time() + 300)
                    reason = "load"
            return self._json(
                200,
                {
                    "model": req["model"],
                    "created_at": now,
                    "response": "",
                    "done": True,
                    "done_reason": reason,
                },
            )
        options = {**_params(fake, m), **(req.get("options") or {})}
        _check_options(options)
        _check_adapter(fake, m)
        prompt = _render(req, str(req.get("template") or template), _text(fake, m, "system"))
        if req.get("_debug_render_only"):
            debug = {"rendered_template": prompt}
            return self._json(
                200,
                {
                    "model": req["model"],
                    "created_at": now,
                    "response": "",
                    "done": False,
                    "_debug_info": debug,
                },
            )
        fake.rendered.append(prompt)
        with fake.lock:
            fake.runners[blob] = (fake.display[found[0]], time.time() + 300)
        n = int(options.get("num_predict", 8))
        pieces = [f"t{i}" for i in range(max(0, min(n, 32)))]
        final = {
            "model": req["model"],
            "created_at": now,
            "done": True,
            "done_reason": "length",
            "total_duration": 1_000_000,
            "load_duration": 1000,
            "prompt_eval_count": 3,
            "prompt_eval_duration": 1000,
            "eval_count": len(pieces),
            "eval_duration": 1000,
        }
        if req.get("stream", True) is False:
            if fake.faults.generate_error:
                raise HTTPFail(500, fake.faults.generate_error)
            return self._json(200, {**final, "response": "".join(pieces)})
        self._stream_start()
        for piece in pieces:
            self._line({"model": req["model"], "created_at": now, "response": piece, "done": False})
            if fake.faults.generate_error:
                self._line({"error": fake.faults.generate_error})
                return self._stream_end()
        self._line({**final, "response": ""})
        return self._stream_end()


def _text(fake: FakeOllama, m: Manifest, kind: str) -> str:
    """A model's template or system text ("" when it has none)."""
    for lay in m.layers:
        if lay["mediaType"] == MEDIA + kind:
            return fake.blob_path(lay["digest"]).read_text()
    return ""


def _render(req: dict[str, Any], template: str, model_system: str) -> str:
    """The prompt the model runs on: ``raw`` as sent; with a suffix (and a prompt) the
    template's ``.Prompt`` and ``.Suffix``; else one user message rendered the legacy way
    (``.System``, ``.Prompt``, cut at ``.Response``). Ollama's ``template.Execute``."""
    prompt = str(req.get("prompt") or "")
    if req.get("raw"):
        return prompt
    if not template:
        template = "{{ .Prompt }}"  # Ollama's default template
    try:
        if "Messages" in gotemplate.fields(template):
            raise gotemplate.TemplateError("the fake renders no .Messages templates")
        suffix = str(req.get("suffix") or "")
        if suffix:
            values = {"Prompt": prompt, "Suffix": suffix, "Response": ""}
            return gotemplate.render(template, values)
        system = str(req.get("system") or model_system)
        values = {"System": system, "Prompt": prompt, "Response": "", "Suffix": ""}
        return gotemplate.render(template, values, cut_at_response=True)
    except gotemplate.TemplateError as exc:
        raise HTTPFail(500, str(exc)) from None


class _Truncate(Exception):
    """Injected: end the create stream without success or error."""


def _refuse_cloud(name: ModelName) -> None:
    if name.tag in ("cloud",) or name.tag.endswith("-cloud"):
        raise HTTPFail(500, f"{name.display()}: cloud models are not reachable in this fake")


def _check_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise HTTPFail(500, 'option "stop" must be of type array')
        if key in INT_OPTS and (not isinstance(value, int) or isinstance(value, bool)):
            raise HTTPFail(500, f'option "{key}" must be of type integer')
        if key in FLOAT_OPTS and not isinstance(value, (int, float)):
            raise HTTPFail(500, f'option "{key}" must be of type float')


def _params(fake: FakeOllama, m: Manifest) -> dict[str, Any]:
    for lay in m.layers:
        if lay["mediaType"] == MEDIA + "params":
            data: dict[str, Any] = json.loads(fake.blob_path(lay["digest"]).read_bytes())
            return data
    return {}


def _check_template(text: str) -> None:
    """Enough of Go's text/template parse to catch what a client gets wrong."""
    actions = re.findall(r"{{-?\s*(.*?)\s*-?}}", text, flags=re.S)
    if text.count("{{") != text.count("}}") or len(actions) != text.count("{{"):
        raise HTTPFail(400, "template error: unclosed action")
    depth = 0
    for action in actions:
        word = action.split(" ", 1)[0]
        if word in ("if", "range", "with", "block", "define"):
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                raise HTTPFail(400, "template error: unexpected {{end}}")
    if depth:
        raise HTTPFail(400, "template error: unexpected EOF")


def _create(fake: FakeOllama, name: ModelName, req: dict[str, Any], digest: str, emit: Any) -> None:
    emit({"status": "parsing GGUF"})
    if not DIGEST.match(digest):
        raise HTTPFail(500, "invalid digest format")
    path = fake.blob_path(digest)
    if not path.exists():
        raise HTTPFail(500, f"open {path}: no such file or directory")
    with open(path, "rb") as fh:
        if fh.read(4) != ggufheader.MAGIC:
            raise HTTPFail(400, "supplied file was not in GGUF format")
    try:
        header = ggufheader.decode(path)
    except ggufheader.BadGGUF as exc:
        raise HTTPFail(500, str(exc)) from None
    model_digest, file_type, listed = digest, header.file_type, header.listed_file_type
    quantize = str(req.get("quantize") or req.get("quantization") or "").upper()
    if quantize:
        allowed = QUANT_NEW if fake.v >= (0, 7, 0) else None
        if allowed is not None and quantize not in allowed:
            raise HTTPFail(
                500,
                f"unsupported quantization type {quantize} - supported types are F32, F16,"
                " Q4_K_S, Q4_K_M, Q8_0",
            )
        if file_type not in QUANT_SOURCES:
            raise HTTPFail(500, "quantization is only supported for F16, BF16 and F32 models")
        target = "Q4_K_M" if quantize == "Q4_K" else quantize
        total = path.stat().st_size
        for done in (0, total // 2, total):
            emit(
                {
                    "status": f"quantizing {file_type} model to {target}",
                    "digest": ZERO_DIGEST,
                    "total": total,
                    "completed": done,
                }
            )
        emit({"status": "verifying conversion"})
        model_digest, _ = fake.store_bytes(path.read_bytes() + f"quantized {target}".encode())
        file_type = listed = target
    elif fake.v >= (0, 30, 0):
        if header.architecture not in fake.architectures:
            raise HTTPFail(
                500,
                "failed to validate GGUF with llama-quantize without compatibility patches:"
                " llama-quantize failed: exit status 1",
            )
        total = path.stat().st_size
        emit(
            {
                "status": "validating GGUF model",
                "digest": ZERO_DIGEST,
                "total": total,
                "completed": total,
            }
        )
        emit({"status": "verifying conversion"})
        model_digest, _ = fake.store_bytes(path.read_bytes() + b"COPY")  # a rewritten layer
    layers = [_layer(fake, "model", model_digest)]
    if req.get("template"):
        _check_template(str(req["template"]))
        layers.append(_text_layer(fake, "template", str(req["template"])))
    if req.get("system"):
        layers.append(_text_layer(fake, "system", str(req["system"])))
    lic = req.get("license")
    if lic is not None:
        if not isinstance(lic, (str, list)):
            raise HTTPFail(400, "license must be a string or a list of strings")
        for text in [lic] if isinstance(lic, str) else lic:
            layers.append(_text_layer(fake, "license", str(text)))
    if req.get("parameters"):
        layers.append(_text_layer(fake, "params", json.dumps(req["parameters"])))
    for lay in layers:
        word = "using existing" if lay.pop("existed") else "creating new"
        emit({"status": f"{word} layer {lay['digest']}"})
    config_digest = _config_blob(fake, header, file_type, listed)
    emit({"status": "writing manifest"})
    if fake.faults.create_no_success > 0:
        fake.faults.create_no_success -= 1
        raise _Truncate()
    with fake.lock:
        old = fake.put(name, Manifest(layers, _config_ref(fake, config_digest)))
        if old:
            _gc(fake, old)
    if fake.faults.error_after_manifest > 0:
        fake.faults.error_after_manifest -= 1
        raise HTTPFail(500, "remove old layer: the process cannot access the file")
    emit({"status": "success"})


def _config_blob(fake: FakeOllama, header: ggufheader.Decoded, file_type: str, listed: str) -> str:
    config = {
        "model_format": "gguf",
        "model_family": header.architecture,
        "model_families": [header.architecture],
        "file_type": file_type,
        "listed_file_type": listed,
        "parameter_size": str(header.parameters),
        "header": header.kv,
    }
    digest, _ = fake.store_bytes(json.dumps(config, default=str).encode())
    return digest


def _config_ref(fake: FakeOllama, digest: str) -> dict[str, Any]:
    size = fake.blob_path(digest).stat().st_size
    return {"digest": digest, "mediaType": CONFIG_MEDIA, "size": size}


def _create_from(
    fake: FakeOllama,
    name: ModelName,
    base: Manifest,
    req: dict[str, Any],
    adapters: dict[str, Any],
) -> Any:
    """The status lines of a create ``from`` ``base``; raises HTTPFail in-stream."""
    replaced = {k for k in ("template", "system", "license") if req.get(k)}
    layers = [dict(lay) for lay in base.layers if lay["mediaType"].removeprefix(MEDIA) not in (
        replaced | ({"adapter"} if adapters else set())
    )]  # fmt: skip
    params = _params(fake, base)
    if req.get("parameters"):
        params = {**params, **req["parameters"]}
        layers = [lay for lay in layers if lay["mediaType"] != MEDIA + "params"]
    for lay in layers:
        yield {"status": f"using existing layer {lay['digest']}"}
    for key, digest in adapters.items():
        yield {"status": "parsing GGUF"}
        if fake.adapters_refused:
            raise HTTPFail(400, ADAPTERS_REFUSED)
        path = fake.blob_path(str(digest))
        if not DIGEST.match(str(digest)) or not path.exists():
            raise HTTPFail(500, f"open {path}: no such file or directory")
        try:
            kv = ggufheader.decode(path).kv
        except ggufheader.BadGGUF as exc:
            raise HTTPFail(500, str(exc)) from None
        if kv.get("general.type") != "adapter":
            raise HTTPFail(400, f"{key}: not an adapter")
        layers.append(_layer(fake, "adapter", str(digest)))
    new = [_text_layer(fake, k, str(req[k])) for k in sorted(replaced)]
    if req.get("parameters"):
        new.append(_text_layer(fake, "params", json.dumps(params)))
    for lay in [*new, *(x for x in layers if "existed" in x)]:
        word = "using existing" if lay.pop("existed") else "creating new"
        yield {"status": f"{word} layer {lay['digest']}"}
    layers += new
    yield {"status": "writing manifest"}
    with fake.lock:
        old = fake.put(name, Manifest(layers, dict(base.config)))
        if old:
            _gc(fake, old)
    yield {"status": "success"}


def _check_adapter(fake: FakeOllama, m: Manifest) -> None:
    """llama.cpp's rules for a LoRA at load: an adapter GGUF of the model's architecture."""
    adapters = [lay for lay in m.layers if lay["mediaType"] == MEDIA + "adapter"]
    if not adapters:
        return
    arch = _config(fake, m)["model_family"]
    kv = ggufheader.decode(fake.blob_path(adapters[0]["digest"])).kv
    if kv.get("adapter.type") != "lora" or kv.get("general.architecture") != arch:
        raise HTTPFail(500, "llama runner process has terminated: failed to apply lora adapter")


def _layer(fake: FakeOllama, kind: str, digest: str, existed: bool = False) -> dict[str, Any]:
    return {
        "mediaType": MEDIA + kind,
        "digest": digest,
        "size": fake.blob_path(digest).stat().st_size,
        "existed": existed,
    }


def _text_layer(fake: FakeOllama, kind: str, text: str) -> dict[str, Any]:
    digest, existed = fake.store_bytes(text.encode())
    return _layer(fake, kind, digest, existed)


def _gc(fake: FakeOllama, old: Manifest) -> None:
    used = {lay["digest"] for m in fake.manifests.values() for lay in m.layers}
    for lay in old.layers:
        if lay["digest"] not in used:
            with contextlib.suppress(OSError):
                fake.blob_path(lay["digest"]).unlink()


def _config(fake: FakeOllama, m: Manifest) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fake.blob_path(m.config["digest"]).read_bytes())
    return data


def _list_entry(fake: FakeOllama, display: str, m: Manifest) -> dict[str, Any]:
    cfg = _config(fake, m)
    return {
        "name": display,
        "model": display,
        "modified_at": datetime.fromtimestamp(m.modified, UTC).isoformat(),
        "size": sum(lay["size"] for lay in m.layers),
        "digest": hashlib.sha256(m.serialized()).hexdigest(),
        "details": {
            "format": "gguf",
            "family": cfg["model_family"],
            "families": cfg["model_families"],
            "parameter_size": cfg["parameter_size"],
            "quantization_level": cfg["listed_file_type"],  # its reader maps 0 to F32
        },
    }


def _show(fake: FakeOllama, m: Manifest) -> dict[str, Any]:
    cfg = _config(fake, m)
    texts: dict[str, list[str]] = {}
    for lay in m.layers:
        kind = lay["mediaType"].removeprefix(MEDIA)
        if kind in ("template", "system", "license", "params"):
            texts.setdefault(kind, []).append(fake.blob_path(lay["digest"]).read_text())
    info = {
        k: ([] if isinstance(v, list) and len(v) > 5 else v)
        for k, v in cfg["header"].items()
        if k not in ("general.name", "tokenizer.chat_template")
    }
    params = json.loads(texts["params"][0]) if "params" in texts else {}
    model = next(lay["digest"] for lay in m.layers if lay["mediaType"] == MEDIA + "model")
    lines = _param_lines(params)
    modelfile = [
        '# Modelfile generated by "ollama show"',
        f"FROM {fake.blob_path(model)}",
        *(f"ADAPTER {fake.blob_path(a['digest'])}" for a in m.layers
          if a["mediaType"] == MEDIA + "adapter"),
        f'TEMPLATE """{(texts.get("template") or [""])[0]}"""',
        *(f"PARAMETER {line}" for line in lines),
    ]  # fmt: skip
    return {
        "modelfile": "\n".join(modelfile) + "\n",
        "parameters": "\n".join(lines),
        "template": (texts.get("template") or [""])[0],
        "system": (texts.get("system") or [""])[0],
        "license": "\n".join(texts.get("license", [])),
        "details": {
            "format": "gguf",
            "family": cfg["model_family"],
            "families": cfg["model_families"],
            "parameter_size": cfg["parameter_size"],
            "quantization_level": cfg["file_type"],
        },
        "model_info": info,
        "modified_at": datetime.fromtimestamp(m.modified, UTC).isoformat(),
    }


def _param_lines(params: dict[str, Any]) -> list[str]:
    """As Go prints them: ``%-30s %#v``, a list one line per item, strings quoted."""
    out = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            out.append(f"{key:<30} {json.dumps(item, ensure_ascii=False)}")
    return out
