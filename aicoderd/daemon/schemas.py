"""Request and response shapes of the socket API; the OpenAPI document is built from these."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    """A response shape: exactly these keys (the status contract test holds the daemon to
    it); the few shapes with open-ended keys say so."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    code: str
    message: str


class ErrorBody(_Model):
    error: ErrorDetail


class DocumentCounts(_Model):
    total: int = Field(description="distinct stored documents")
    failed: int
    retired: int
    pending: int = Field(description="files waiting to settle or being ingested")
    by_source: dict[str, int]


class FeedbackCounts(_Model):
    valid: int
    invalid: int
    by_source: dict[str, int] = Field(
        default_factory=dict, description="valid records by source: file, continue, tabby"
    )


class RunningJob(_Model):
    id: int
    kind: str
    progress: dict[str, Any] | None


class JobCounts(_Model):
    queued: int
    running: list[RunningJob]
    by_state: dict[str, int]


class FolderStatus(_Model):
    path: str
    mode: str
    pending: int


class CorpusStatus(_Model):
    snapshot: str | None = Field(description="the current snapshot's id; null before the first")
    created: str | None = Field(default=None, description="when it was built")
    error: str | None = Field(default=None, description="why the manifest could not be read")
    documents: int
    bytes: int
    tokens_estimate: int
    removed: dict[str, int] = Field(description="documents removed, by reason")
    redactions: dict[str, int] = Field(description="secrets replaced, by detector")


class PipelineStage(_Model):
    state: str = Field(description="disabled | waiting | queued | running")
    waiting_for: str | None = Field(
        default=None, description="what must happen before the stage runs"
    )
    job_id: int | None = Field(default=None, description="the stage's queued or running job")
    in_s: float | None = Field(
        default=None, description="seconds until the stage acts, when that is known"
    )


class ModelFigures(_Model):
    """A model's evaluation on the eval split (``aicoder --json eval`` and metrics.json use
    the same names)."""

    eval_loss_per_byte: float | None = Field(default=None, description="nats per byte")
    bits_per_byte: float | None = Field(default=None, description="the model's code length")
    xz_bits_per_byte: float | None = Field(default=None, description="xz -9e on the same text")
    zstd_bits_per_byte: float | None = Field(default=None, description="zstd -19 on it")
    infill_exact_match: float | None = Field(
        default=None, description="single-line infilling, share of lines written exactly"
    )
    next_line_exact_match: float | None = Field(
        default=None, description="the same lines from their prefix alone"
    )
    completion_cases: int | None = Field(default=None, description="lines masked")


class GateVerdict(_Model):
    job_id: int = Field(description="the eval job")
    model: str = Field(description="the candidate's version")
    passed: bool
    promoted: bool
    reason: str = Field(description="both figures against their limits")
    candidate: ModelFigures
    current: ModelFigures | None = Field(description="the model it was gated against")


class PipelineStatus(_Model):
    current_model: str | None = Field(description="the promoted model version (models/current)")
    loss_plot: str | None = Field(default=None, description="the current model's loss.png")
    current_metrics: ModelFigures | None = Field(
        default=None, description="the current model's figures from its last evaluation"
    )
    gate: GateVerdict | None = Field(default=None, description="the newest gate's verdict")
    corpus: PipelineStage | None = Field(
        default=None, description="the corpus build: waits for ingestion to be quiet"
    )
    checked: float = Field(description="when the pipeline last looked (Unix time)")
    train: PipelineStage
    finetune: PipelineStage
    eval: PipelineStage = Field(description="the gate; it promotes a model that passes")
    export: PipelineStage
    deploy: PipelineStage
    adapt: PipelineStage | None = Field(
        default=None, description="LoRA on the Ollama model adapt.from, deployed beside it"
    )


class SourceStatus(_Model):
    name: str
    type: str = Field(description="web | feed | git | youtube")
    enabled: bool
    schedule: str = Field(description='an interval ("6h") or a five-field cron expression')
    last_run: float | None = Field(description="when the last run ended (Unix time)")
    outcome: str | None = Field(description="succeeded | partial | failed | cancelled")
    added: int
    updated: int
    unchanged: int
    retired: int
    failed: int = Field(description="items that could not be fetched in the last run")
    last_error: str | None
    next_run: float | None = Field(description="the next scheduled fire (Unix time)")
    running_job: int | None = Field(description="the source's queued or running fetch job")
    job_state: str | None = Field(default=None, description="that job's state")


class SourceList(_Model):
    sources: list[SourceStatus]


class Status(_Model):
    version: str
    uptime_s: float
    pid: int
    watcher: str
    documents: DocumentCounts
    feedback: FeedbackCounts
    jobs: JobCounts
    folders: list[FolderStatus]
    corpus: CorpusStatus | None = None
    pipeline: PipelineStatus | None = Field(
        default=None, description="the unattended chain: what each stage waits for"
    )
    sources: list[SourceStatus] = Field(default_factory=list)


class Document(_Model):
    id: int
    sha256: str | None
    source: str
    uri: str
    kind: str
    language: str | None
    size: int
    first_seen: float
    last_seen: float
    status: str
    failure_reason: str | None


class DocumentList(_Model):
    documents: list[Document]
    next_after: int | None


class Job(_Model):
    id: int
    kind: str
    params: dict[str, Any]
    state: str
    created: float
    started: float | None
    finished: float | None
    attempts: int
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    pid: int | None


class JobList(_Model):
    jobs: list[Job]


class JobSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class Event(_Model):
    model_config = ConfigDict(extra="allow")  # each event type has fields of its own

    seq: int
    time: float
    type: str
    job_id: int | None


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(min_length=1)


class IngestOutcome(_Model):
    path: str
    status: str
    documents: int
    reason: str | None
    message: str | None


class IngestResult(_Model):
    outcomes: list[IngestOutcome]


class Reloaded(_Model):
    reloaded: bool
    problems: list[str]
