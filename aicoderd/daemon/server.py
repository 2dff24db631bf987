"""HTTP/1.1 + JSON API on the Unix socket (aiohttp on a socket we bind ourselves).

The socket is created 0600 inside a 0700 directory, and every request's peer credentials
(SO_PEERCRED) must carry our own uid: directory permissions are the first gate, this the second.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ValidationError

from aicoderd import __version__, log, paths
from aicoderd.daemon import schemas
from aicoderd.errors import AicoderError, BadRequest

logger = log.get(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DaemonApi(Protocol):
    """What the API needs from the daemon, and nothing more."""

    @property
    def stopping(self) -> bool: ...

    async def status(self) -> schemas.Status: ...

    async def status_body(self) -> bytes: ...

    def documents(
        self, status: str | None, source: str | None, limit: int, after: int
    ) -> list[dict[str, Any]]: ...

    def events_since(self, seq: int, limit: int) -> list[dict[str, Any]]: ...

    async def wait_for_event(self, timeout: float) -> None: ...

    def submit_job(self, kind: str, params: dict[str, Any]) -> dict[str, Any]: ...

    async def cancel_job(self, job_id: int) -> dict[str, Any]: ...

    def job_log(self, job_id: int, offset: int) -> tuple[bytes, int]: ...

    def sources(self) -> list[dict[str, Any]]: ...

    def fetch_source(self, name: str) -> dict[str, Any]: ...

    async def ingest_paths(self, paths: list[Path]) -> list[dict[str, Any]]: ...

    async def reload(self) -> list[str]: ...

    def find_jobs(self, state: str | None, limit: int) -> list[dict[str, Any]]: ...

    def get_job(self, job_id: int) -> dict[str, Any]: ...


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    uid = peer_uid(request)
    if uid is not None and uid != os.getuid():
        logger.warning("api.peer_refused", uid=uid)
        return error_response(403, "forbidden", f"uid {uid} may not use this daemon")
    try:
        return await handler(request)
    except AicoderError as exc:
        return error_response(exc.http_status, exc.code, str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error_response(400, "bad_request", problems)
    except web.HTTPException as exc:
        code = "not_found" if exc.status == 404 else "http_error"
        return error_response(exc.status, code, exc.reason)
    except Exception as exc:
        logger.exception("api.internal_error", path=request.path)
        return error_response(500, "internal", f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[DaemonApi, web.Request], Awaitable[web.StreamResponse]]
    summary: str
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    ndjson: bool = False
    text: bool = False


MAX_INT = 2**63 - 1  # SQLite's integers: anything larger is not an id, an offset or a count
MAX_DEPTH = 32  # nesting of a request body (job params are small objects)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _json_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The body as ``model``: strict JSON (no NaN or Infinity), nested at most MAX_DEPTH deep."""
    text = await request.text()
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body must be JSON ({exc})") from None
    except RecursionError:
        raise BadRequest(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    if _depth(raw) > MAX_DEPTH:
        raise BadRequest(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return model.model_validate(raw)


def _depth(value: Any) -> int:
    """How deep ``value`` nests, without recursion (a hostile body must not exhaust the stack)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        pending += [(child, level + 1) for child in children]
    return deepest


def _integer(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{what} must be an integer") from None
    if not 0 <= value <= MAX_INT:
        raise BadRequest(f"{what} must be between 0 and {MAX_INT}")
    return value


def _int(request: web.Request, name: str, default: int) -> int:
    value = request.query.get(name)
    return default if value is None else _integer(value, f"query parameter {name}")


async def get_status(d: DaemonApi, request: web.Request) -> web.Response:
    return web.Response(body=await d.status_body(), content_type="application/json")


async def get_documents(d: DaemonApi, request: web.Request) -> web.Response:
    limit = max(1, min(_int(request, "limit", 100), 1000))
    docs = await asyncio.to_thread(
        d.documents,
        request.query.get("status"),
        request.query.get("source"),
        limit,
        _int(request, "after", 0),
    )
    nxt = docs[-1]["id"] if len(docs) == limit else None
    return web.json_response({"documents": docs, "next_after": nxt})


async def get_jobs(d: DaemonApi, request: web.Request) -> web.Response:
    jobs = await asyncio.to_thread(
        d.find_jobs, request.query.get("state"), min(_int(request, "limit", 100), 1000)
    )
    return web.json_response({"jobs": jobs})


async def get_job_log(d: DaemonApi, request: web.Request) -> web.Response:
    data, size = await asyncio.to_thread(d.job_log, _path_id(request), _int(request, "offset", 0))
    return web.Response(
        body=data,
        headers={"Content-Type": "text/plain; charset=utf-8", "X-Log-Size": str(size)},
    )


async def get_job(d: DaemonApi, request: web.Request) -> web.Response:
    return web.json_response(d.get_job(_path_id(request)))


async def post_job(d: DaemonApi, request: web.Request) -> web.Response:
    body = await _json_body(request, schemas.JobSubmit)
    job = d.submit_job(body.kind, body.params)
    return web.json_response(job, status=201)


async def delete_job(d: DaemonApi, request: web.Request) -> web.Response:
    job = await d.cancel_job(_path_id(request))
    return web.json_response(job)


def _path_id(request: web.Request) -> int:
    return _integer(request.match_info["id"], "job id")


async def get_events(d: DaemonApi, request: web.Request) -> web.StreamResponse:
    since = _int(request, "since", 0)
    follow = request.query.get("follow", "0") not in ("0", "false", "")
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    while True:
        batch = await asyncio.to_thread(d.events_since, since, 1000)
        for event in batch:
            await resp.write(json.dumps(event).encode() + b"\n")
            since = event["seq"]
        if len(batch) == 1000:
            continue
        if not follow or d.stopping:
            break
        await d.wait_for_event(timeout=1.0)
    await resp.write_eof()
    return resp


async def post_ingest(d: DaemonApi, request: web.Request) -> web.Response:
    body = await _json_body(request, schemas.IngestRequest)
    outcomes = await d.ingest_paths([Path(p) for p in body.paths])
    return web.json_response({"outcomes": outcomes})


async def post_reload(d: DaemonApi, request: web.Request) -> web.Response:
    problems = await d.reload()
    return web.json_response(
        {"reloaded": not problems, "problems": problems}, status=200 if not problems else 400
    )


async def get_metrics(d: DaemonApi, request: web.Request) -> web.Response:
    from aicoderd.daemon import metrics  # prometheus_client: loaded when first scraped

    status = (await d.status()).model_dump(mode="json")
    return web.Response(
        body=metrics.exposition(status),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def get_sources(d: DaemonApi, request: web.Request) -> web.Response:
    return web.json_response({"sources": await asyncio.to_thread(d.sources)})


async def post_source_fetch(d: DaemonApi, request: web.Request) -> web.Response:
    job = d.fetch_source(request.match_info["name"])
    return web.json_response(job, status=201)


async def get_openapi(d: DaemonApi, request: web.Request) -> web.Response:
    return web.json_response(openapi())


ROUTES = [
    Route("GET", "/v1/status", get_status, "Daemon status", schemas.Status),
    Route(
        "GET",
        "/v1/documents",
        get_documents,
        "Documents, paged by id (status, source, limit, after)",
        schemas.DocumentList,
    ),
    Route("GET", "/v1/jobs", get_jobs, "Jobs, newest first (state, limit)", schemas.JobList),
    Route("POST", "/v1/jobs", post_job, "Queue a job", schemas.Job, schemas.JobSubmit),
    Route("GET", "/v1/jobs/{id}", get_job, "One job", schemas.Job),
    Route(
        "GET",
        "/v1/jobs/{id}/log",
        get_job_log,
        "What the job's process logged, from byte offset (offset=N); X-Log-Size says how far",
        text=True,
    ),
    Route(
        "DELETE", "/v1/jobs/{id}", delete_job, "Cancel a job (SIGTERM, then SIGKILL)", schemas.Job
    ),
    Route(
        "GET",
        "/v1/events",
        get_events,
        "Events as NDJSON (since=SEQ, follow=1 streams)",
        schemas.Event,
        ndjson=True,
    ),
    Route(
        "POST",
        "/v1/ingest",
        post_ingest,
        "Ingest files or folders by path (copied, never modified)",
        schemas.IngestResult,
        schemas.IngestRequest,
    ),
    Route(
        "POST",
        "/v1/reload",
        post_reload,
        "Reload and re-validate the configuration",
        schemas.Reloaded,
    ),
    Route(
        "GET",
        "/v1/sources",
        get_sources,
        "Scheduled sources and their last runs",
        schemas.SourceList,
    ),
    Route(
        "POST",
        "/v1/sources/{name}/fetch",
        post_source_fetch,
        "Fetch a source now, enabled or not (409 while one of its fetches is queued or running)",
        schemas.Job,
    ),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics", text=True),
    Route("GET", "/openapi.json", get_openapi, "This document"),
]


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, built from :data:`ROUTES` and the pydantic schemas."""
    components: dict[str, Any] = {}
    paths_: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"application/json": {"schema": ref(schemas.ErrorBody)}}
    for r in ROUTES:
        media = (
            "application/x-ndjson" if r.ndjson else "text/plain" if r.text else "application/json"
        )
        content = {media: {"schema": ref(r.response)}} if r.response else {media: {}}
        op: dict[str, Any] = {
            "summary": r.summary,
            "responses": {
                "200": {"description": "OK", "content": content},
                "default": {"description": "Error", "content": error},
            },
        }
        if r.body:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.body)}},
            }
        if "{id}" in r.path:
            op["parameters"] = [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ]
        if "{name}" in r.path:
            op["parameters"] = [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        paths_.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "aicoderd", "version": __version__},
        "paths": paths_,
        "components": {"schemas": components},
    }


def build_app(daemon: DaemonApi) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=16 * 2**20)
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _bind(daemon, r.handler))
    return app


def _bind(
    daemon: DaemonApi, handler: Callable[[DaemonApi, web.Request], Awaitable[web.StreamResponse]]
) -> Handler:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await handler(daemon, request)

    return bound


def bind_socket(path: Path) -> socket.socket:
    """Bind the API socket with mode 0600 inside a private 0700 directory. A stale socket is
    removed only when nothing answers on it (the caller holds the instance lock)."""
    paths.ensure_private_dir(path.parent)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise AicoderError(f"another daemon is answering on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


# Connections waiting to be accepted: a burst of clients (200 editor plugins at once) queues
# here instead of failing (the kernel caps it at net.core.somaxconn, 4096 by default).
LISTEN_BACKLOG = 1024


class CappedSite(web.BaseSite):
    """The API on our own socket, with a cap on connections: one more than the cap is answered
    503 and closed at once, so a client that opens thousands cannot starve the others."""

    def __init__(self, runner: web.AppRunner, sock: socket.socket, cap: int) -> None:
        super().__init__(runner, shutdown_timeout=2.0)
        self._sock = sock
        self._cap = cap

    @property
    def name(self) -> str:
        return f"unix:{self._sock.getsockname()}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        # Accepted together, new connections register with the server only on the loop's next
        # turn: count those too (a moment at most) so that a burst of connects is capped.
        fresh: list[tuple[asyncio.BaseProtocol, float]] = []

        def protocol() -> asyncio.BaseProtocol:
            nonlocal fresh
            now = loop.time()
            fresh = [
                (p, t) for p, t in fresh if getattr(p, "transport", None) is None and now - t < 1.0
            ]
            if len(server.connections) + len(fresh) >= self._cap:
                return _Refuse()
            handler = server()
            fresh.append((handler, now))
            return handler

        self._server = await loop.create_unix_server(  # asyncio listens again: say how much
            protocol, sock=self._sock, backlog=LISTEN_BACKLOG
        )


class _Refuse(asyncio.Protocol):
    BODY = json.dumps(
        {"error": {"code": "too_many_connections", "message": "too many connections; retry"}}
    ).encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(self.BODY), self.BODY)
        )
        transport.close()
