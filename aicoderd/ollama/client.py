"""A small client for the Ollama endpoints a deploy needs (blobs, create, show,
copy, delete, tags, ps, generate).

httpx errors are translated here: a server that cannot be reached is
:class:`OllamaUnavailable` (the deploy job waits and retries), anything else the server says
is :class:`~aicoderd.errors.OllamaError` with its ``error`` text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from aicoderd.errors import CreateFailed, CreateIncomplete, OllamaError, OllamaUnavailable
from aicoderd.ollama import names
from aicoderd.ollama.host import base_url

if TYPE_CHECKING:  # the upload runs without pydantic (~15 MiB)
    from aicoderd.config import Settings

# Connecting and ordinary calls are quick; create may validate and quantize for minutes and
# must never be abandoned (Ollama's create worker blocks for good on a client that went away).
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
CREATE_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=10.0)
UPLOAD_TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=600.0, pool=10.0)
Status = Callable[[dict[str, Any]], None]


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip() or resp.reason_phrase
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)


class Client:
    def __init__(self, base_url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=TIMEOUT, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings) -> Client:
        """The configured Ollama (``ollama.host``, resolved when the config was loaded)."""
        return cls(base_url(settings.ollama.host))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise OllamaUnavailable(f"Ollama is not reachable at {self.base_url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise OllamaError(f"{method} {path} failed: {exc}") from exc
        return resp

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.request(method, path, **kw)
        if resp.status_code >= 400:
            raise OllamaError(f"{method} {path}: {resp.status_code} {_message(resp)}")
        return resp.json() if resp.content else {}

    # --- endpoints -------------------------------------------------------------------------
    def version(self) -> str:
        return str(self._json("GET", "/api/version")["version"])

    def has_blob(self, digest: str) -> bool:
        resp = self.request("HEAD", f"/api/blobs/{digest}")
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise OllamaError(f"HEAD /api/blobs/{digest}: {resp.status_code}")

    def post_blob(self, digest: str, body: Iterator[bytes], size: int) -> int:
        """POST raw bytes; returns the status (201 stored, 200 already there). A connection
        broken mid-body raises :class:`httpx.TransportError` for the caller to re-check."""
        resp = self._http.post(
            f"/api/blobs/{digest}",
            content=body,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            timeout=UPLOAD_TIMEOUT,
        )
        if resp.status_code not in (200, 201):
            raise OllamaError(f"blob upload {digest}: {resp.status_code} {_message(resp)}")
        return resp.status_code

    def create(self, request: dict[str, Any], on_status: Status | None = None) -> list[str]:
        """Run ``/api/create`` streaming; returns the status lines. An ``error`` line raises."""
        statuses: list[str] = []
        try:
            with self._http.stream(
                "POST",
                "/api/create",
                json={**request, "stream": True},
                headers={"Accept": "application/x-ndjson"},
                timeout=CREATE_TIMEOUT,
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise OllamaError(f"create {request.get('model')}: {_message(resp)}")
                for line in resp.iter_lines():
                    if not line.strip():
                        continue
                    msg = json.loads(line)
                    if msg.get("error"):
                        raise CreateFailed(str(msg["error"]), statuses)
                    statuses.append(str(msg.get("status", "")))
                    if on_status:
                        on_status(msg)
                    if msg.get("status") == "success":
                        return statuses
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise OllamaUnavailable(f"Ollama is not reachable at {self.base_url}: {exc}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise CreateIncomplete(f"create stream broke: {exc}") from exc
        raise CreateIncomplete(
            f"create {request.get('model')}: the stream ended without success"
            f" (last status {statuses[-1] if statuses else 'none'!r})"
        )

    def show(self, name: str) -> dict[str, Any] | None:
        resp = self.request("POST", "/api/show", json={"model": name})
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise OllamaError(f"show {name}: {_message(resp)}")
        data: dict[str, Any] = resp.json()
        return data

    def generate(
        self,
        name: str,
        prompt: str,
        options: dict[str, Any],
        *,
        suffix: str | None = None,
        raw: bool = False,
    ) -> dict[str, Any]:
        """One generation, not streamed. With ``suffix`` the model's template lays out a
        fill-in-the-middle request; with ``raw`` the prompt is sent as it is."""
        body: dict[str, Any] = {"model": name, "prompt": prompt, "stream": False}
        body["options"] = options
        if suffix is not None:
            body["suffix"] = suffix
        if raw:
            body["raw"] = True
        data: dict[str, Any] = self._json(
            "POST", "/api/generate", json=body, timeout=CREATE_TIMEOUT
        )
        return data

    def unload(self, name: str) -> None:
        self._json("POST", "/api/generate", json={"model": name, "keep_alive": 0})

    def copy(self, source: str, destination: str) -> None:
        self._json("POST", "/api/copy", json={"source": source, "destination": destination})

    def delete(self, name: str) -> None:
        self._json("DELETE", "/api/delete", json={"model": name})

    def tags(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/tags").get("models") or [])

    def ps(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/ps").get("models") or [])

    def loaded(self, name: str) -> bool:
        """Whether a runner for ``name`` is in memory (names compare as Ollama compares them)."""
        want = names.parse(name).key()
        return any(
            names.is_valid(m["name"]) and names.parse(m["name"]).key() == want for m in self.ps()
        )
