"""The CLI's HTTP client for the daemon's Unix socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from aicoderd import protocol
from aicoderd.errors import ApiError, DaemonUnavailable


class Client:
    def __init__(self, socket: Path, timeout: float | None = 30.0) -> None:
        self.socket = socket
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket)),
            base_url=f"http://{protocol.HOST}",
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def close(self) -> None:
        self._http.close()

    def _down(self, exc: Exception) -> DaemonUnavailable:
        return DaemonUnavailable(
            f"aicoderd is not running (nothing answers on {self.socket}); start it with "
            "`aicoder service install` or run `aicoderd`"
        )

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise self._down(exc) from None
        return _decode(resp)

    def raw(self, method: str, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        """The response itself (a text body and its headers), an error answer raised."""
        try:
            resp = self._http.request(method, path, params=params)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise self._down(exc) from None
        if resp.status_code >= 400:
            _decode(resp)
        return resp

    def stream(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(None, connect=5.0)
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _decode(resp)
                for line in resp.iter_lines():
                    if line.strip():
                        yield json.loads(line)
        except (httpx.ConnectError, FileNotFoundError) as exc:
            raise self._down(exc) from None


def _decode(resp: httpx.Response) -> Any:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.status_code >= 400:
        err = (data or {}).get("error", {}) if isinstance(data, dict) else {}
        raise ApiError(
            err.get("code", "http_error"), err.get("message", resp.text), resp.status_code
        )
    return data if data is not None else resp.text
