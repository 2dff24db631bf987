"""A fake Ollama for tests: a real HTTP/1.1 server on loopback that enforces Ollama's rules
(its ``server/routes.go`` and ``server/create.go``), with its own name grammar, GGUF header
decoder and version compare, never the product's: a bug there must not hide in both.

Usage: ``with FakeOllama() as fake: Client(fake.url)...``
"""

from aicoderd.ollama.testing.server import FakeOllama, Faults

__all__ = ["FakeOllama", "Faults"]
