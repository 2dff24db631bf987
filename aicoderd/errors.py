"""One exception tree: every error aicoderd raises on purpose. Each class has a stable ``code``
that the API returns, the HTTP status the API answers with, and the exit status the CLI ends
with (0 ok, 1 failed, 2 usage or invalid configuration, 3 skipped / not installed, 4 the daemon
is not running); :func:`exit_status` maps a code the daemon sent back to the same exit status."""

from __future__ import annotations

from functools import cache

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # also: invalid configuration
EXIT_SKIPPED = 3  # also: an optional part is not installed
EXIT_DAEMON_DOWN = 4


class AicoderError(Exception):
    """Base of every error aicoderd raises on purpose."""

    code = "error"
    http_status = 500
    exit_status = EXIT_FAILED


class ConfigError(AicoderError):
    """Invalid configuration; ``problems`` holds one readable line per bad key."""

    code = "config_invalid"
    http_status = 400
    exit_status = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BadRequest(AicoderError):
    code = "bad_request"
    http_status = 400
    exit_status = EXIT_USAGE


class NotFound(AicoderError):
    code = "not_found"
    http_status = 404


class StoreError(AicoderError):
    code = "store_error"


class IngestRefused(AicoderError):
    """A file or archive member that will not enter the corpus; ``reason`` is a short code."""

    code = "ingest_refused"
    http_status = 422

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FeedbackError(AicoderError):
    code = "feedback_invalid"
    http_status = 422


class JobError(AicoderError):
    code = "job_error"
    http_status = 409


class JobSkipped(AicoderError):
    """A job that had nothing to do; it ends ``skipped`` with this sentence."""

    code = "job_skipped"
    exit_status = EXIT_SKIPPED


class DaemonUnavailable(AicoderError):
    """The CLI could not reach the daemon's socket."""

    code = "daemon_unavailable"
    http_status = 503
    exit_status = EXIT_DAEMON_DOWN


class ApiError(AicoderError):
    """An error the daemon answered with: its code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = status
        self.exit_status = exit_status(code)


class CommandError(AicoderError):
    """An external program failed, timed out or is not installed."""

    code = "command_failed"

    def __init__(self, message: str, returncode: int | None, output: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class SourceError(AicoderError):
    code = "source_error"


class CorpusError(AicoderError):
    code = "corpus_error"


class BuildCancelled(CorpusError):
    code = "corpus_build_cancelled"


class TrainingError(AicoderError):
    code = "training_error"


class ExportError(AicoderError):
    code = "export_error"


class OllamaError(AicoderError):
    code = "ollama_error"


class OllamaUnavailable(OllamaError):
    """Nothing answers at the Ollama address."""

    code = "ollama_unavailable"
    http_status = 503


class CreateIncomplete(OllamaError):
    """The create stream ended without ``success`` or ``error``: the outcome is unknown."""

    code = "ollama_create_incomplete"


class CreateFailed(OllamaError):
    """An ``error`` line in the create stream; ``statuses`` are the lines before it."""

    code = "ollama_create_failed"

    def __init__(self, message: str, statuses: list[str]) -> None:
        super().__init__(message)
        self.statuses = statuses


class GGUFError(OllamaError):
    """A file that is not a GGUF Ollama would take."""

    code = "gguf_invalid"


@cache
def _codes() -> dict[str, int]:
    found: dict[str, int] = {}
    pending: list[type[AicoderError]] = [AicoderError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls.exit_status)
        pending += cls.__subclasses__()
    return found


def exit_status(code: str) -> int:
    """The CLI's exit status for an error code (the daemon's answer carries only the code)."""
    return _codes().get(code, EXIT_FAILED)
