"""``OLLAMA_HOST`` parsed the way Ollama's own envconfig does."""

from __future__ import annotations

DEFAULT_PORT = 11434
_SCHEME_PORTS = {"http": 80, "https": 443}


def base_url(value: str | None) -> str:
    """The base URL to connect to, e.g. ``http://127.0.0.1:11434``."""
    raw = (value or "").strip().strip("\"'")
    if not raw:
        return f"http://127.0.0.1:{DEFAULT_PORT}"
    if raw == "ollama.com":
        return "https://ollama.com:443"
    scheme, rest = ("http", raw)
    default_port = DEFAULT_PORT
    if "://" in raw:
        scheme, rest = raw.split("://", 1)
        scheme = scheme.lower()
        default_port = _SCHEME_PORTS.get(scheme, DEFAULT_PORT)
    hostport, slash, path = rest.partition("/")
    host, port = _split_hostport(hostport)
    if not port.isdigit() or not 0 < int(port) < 65536:
        port = str(default_port)
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    base = f"{scheme}://{host}:{port}"
    return base + (f"/{path}".rstrip("/") if slash and path else "")


def _split_hostport(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        return host, tail[1:] if tail.startswith(":") else ""
    if hostport.count(":") > 1:  # a bare IPv6 address such as ::1
        return hostport, ""
    host, _, port = hostport.partition(":")
    return host, port
