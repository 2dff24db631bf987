"""One exception tree; each class has a stable ``code`` that the API returns and the CLI maps
to an exit status."""

from __future__ import annotations


class AicoderError(Exception):
    """Base of every error aicoderd raises on purpose."""

    code = "error"
    http_status = 500
    exit_status = 1


class ConfigError(AicoderError):
    """Invalid configuration; ``problems`` holds one readable line per bad key."""

    code = "config_invalid"
    http_status = 400
    exit_status = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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


class NotFound(AicoderError):
    code = "not_found"
    http_status = 404


class BadRequest(AicoderError):
    code = "bad_request"
    http_status = 400


class DaemonUnavailable(AicoderError):
    """The CLI could not reach the daemon's socket."""

    code = "daemon_unavailable"
    exit_status = 4


class SourceError(AicoderError):
    code = "source_error"


class CorpusError(AicoderError):
    code = "corpus_error"


class TrainingError(AicoderError):
    code = "training_error"


class ExportError(AicoderError):
    code = "export_error"


class OllamaError(AicoderError):
    code = "ollama_error"


class JobSkipped(AicoderError):
    """A job that had nothing to do; it ends ``skipped`` with this sentence."""

    code = "job_skipped"
    exit_status = 3
