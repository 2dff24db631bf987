"""Typed configuration: a YAML file overridden by ``AICODER_*`` environment variables.

Loaded once at the edge (:func:`load_config`) and passed down; stage code never reads the
environment. Every key is documented, with its default, in ``config.example.yaml``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from aicoderd import paths
from aicoderd.errors import ConfigError

ENV_PREFIX = "AICODER_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FolderConfig(_Section):
    path: Path
    mode: Literal["consume", "mirror"] = "consume"
    recursive: bool = True
    settle_seconds: float | None = Field(default=None, ge=0)


class IngestConfig(_Section):
    settle_seconds: float = Field(default=3.0, ge=0)
    rescan_interval_seconds: float = Field(default=300.0, gt=0)
    stuck_after_seconds: float = Field(default=3600.0, gt=0)
    max_file_bytes: ByteSize = ByteSize(20 * 2**20)
    batch_size: int = Field(default=64, ge=1, le=10_000)
    ignore_patterns: list[str] = Field(default_factory=list)
    archive_max_members: int = Field(default=10_000, ge=1)
    archive_max_total_bytes: ByteSize = ByteSize(512 * 2**20)
    archive_max_ratio: float = Field(default=100.0, gt=1)


class FeedbackConfig(_Section):
    files: list[Path] | None = None
    poll_interval_seconds: float = Field(default=1.0, gt=0)


class JobsConfig(_Section):
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    plugins: list[str] = Field(default_factory=list)


class EventsConfig(_Section):
    retain: int = Field(default=100_000, ge=100)


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def interval_seconds(schedule: str) -> float | None:
    """``"6h"`` → 21600.0; None when ``schedule`` is not an interval (so: a cron expression)."""
    m = _INTERVAL.match(schedule)
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None


def check_schedule(schedule: str) -> str:
    """An interval such as ``30m``, ``6h``, ``1d``, or a five-field cron expression."""
    seconds = interval_seconds(schedule)
    if seconds is not None:
        if seconds < 60:
            raise ValueError("an interval must be at least 1m")
        return schedule.strip()
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(schedule)
    except ValueError as exc:
        raise ValueError(f"not an interval like 6h nor a cron expression: {exc}") from None
    return schedule.strip()


class _SourceBase(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    schedule: str = "6h"
    enabled: bool = True
    jitter_seconds: float = Field(default=300.0, ge=0)
    misfire_grace_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_schedule(value)


class WebSource(_SourceBase):
    type: Literal["web"]
    urls: list[AnyHttpUrl] = Field(min_length=1)
    sitemap: AnyHttpUrl | None = None
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    max_pages: int = Field(default=500, ge=1)
    max_depth: int = Field(default=3, ge=0)
    requests_per_second: float = Field(default=1.0, gt=0)
    max_body_bytes: ByteSize = ByteSize(5 * 2**20)
    timeout_seconds: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0)


class FeedSource(_SourceBase):
    type: Literal["feed"]
    url: AnyHttpUrl
    use_entry_content: bool = False
    max_entries: int = Field(default=50, ge=1)


GitProtocol = Literal["https", "ssh", "git", "file"]


def _default_git_protocols() -> list[GitProtocol]:
    return ["https", "ssh", "file"]


class GitSource(_SourceBase):
    type: Literal["git"]
    url: str = Field(min_length=1)
    branch: str | None = None
    include: list[str] = Field(default_factory=lambda: ["**/*.py"])
    exclude: list[str] = Field(default_factory=list)
    max_file_bytes: ByteSize = ByteSize(2**20)
    protocols: list[GitProtocol] = Field(default_factory=_default_git_protocols)
    timeout_seconds: float = Field(default=600.0, gt=0)


class YoutubeSource(_SourceBase):
    type: Literal["youtube"]
    videos: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: ["en"])
    translate_to: str | None = None
    proxy: AnyHttpUrl | None = None

    @model_validator(mode="after")
    def _something(self) -> YoutubeSource:
        if not self.videos and not self.channels:
            raise ValueError("give at least one of videos or channels")
        return self


SourceConfig = Annotated[
    WebSource | FeedSource | GitSource | YoutubeSource, Field(discriminator="type")
]


def _default_folders() -> list[FolderConfig]:
    return [FolderConfig(path=Path.home() / "aicoder-inbox", mode="consume")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=paths.data_home)
    socket: Path = Field(default_factory=paths.default_socket)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    folders: list[FolderConfig] = Field(default_factory=_default_folders)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    sources: list[SourceConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser()
        self.socket = self.socket.expanduser()
        for folder in self.folders:
            folder.path = folder.path.expanduser()
        if self.feedback.files is None:
            self.feedback.files = [self.feedback_dir / "user_feedback.jsonl"]
        self.feedback.files = [f.expanduser() for f in self.feedback.files]
        return self

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Any]) -> list[Any]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique (repeated: {', '.join(dupes)})")
        return sources

    def source(self, name: str) -> WebSource | FeedSource | GitSource | YoutubeSource | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def sources_dir(self) -> Path:
        """Per-source persistent working space (git clones, HTTP validators)."""
        return self.data_dir / "sources"

    @property
    def feedback_dir(self) -> Path:
        return self.data_dir / "feedback"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def state_db(self) -> Path:
        return self.data_dir / "state.db"

    def settle_for(self, folder: FolderConfig) -> float:
        if folder.settle_seconds is not None:
            return folder.settle_seconds
        return self.ingest.settle_seconds

    def feedback_files(self) -> list[Path]:
        return list(self.feedback.files or [])


def _format_problem(err: Any) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    message = err["msg"]
    value = err.get("input")
    if isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
        return f"{key}: {message} (got {value!r})"
    return f"{key}: {message}"


def _read_yaml(path: Path, *, required: bool) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError([f"config file {path}: does not exist"]) from None
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"config file {path}: cannot be read ({exc})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise ConfigError([f"config file {path}{line}: not valid YAML ({exc})"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"config file {path}: top level must be a mapping of keys"])
    return data


def _check_paths(settings: Settings) -> list[str]:
    problems = []
    for i, folder in enumerate(settings.folders):
        if folder.mode == "mirror" and not folder.path.is_dir():
            problems.append(f"folders.{i}.path: {folder.path} is not a readable directory")
        elif folder.path.exists() and not folder.path.is_dir():
            problems.append(f"folders.{i}.path: {folder.path} exists and is not a directory")
        elif folder.path.is_dir() and not os.access(folder.path, os.R_OK | os.X_OK):
            problems.append(f"folders.{i}.path: {folder.path} is not readable")
    if settings.data_dir.exists() and not os.access(settings.data_dir, os.W_OK | os.X_OK):
        problems.append(f"data_dir: {settings.data_dir} is not writable")
    return problems


def _unknown_env_keys() -> list[str]:
    """pydantic-settings ignores unknown prefixed variables; a typo must not pass silently."""
    fields = {name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name in os.environ
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].split("__")[0] not in fields
    )


def load_config(path: Path | None = None, *, check_paths: bool = True) -> Settings:
    """Read, validate and return the settings, or raise :class:`ConfigError` listing every
    problem (one line per key)."""
    required = path is not None
    config_path = path if path is not None else paths.default_config_file()
    data = _read_yaml(config_path.expanduser(), required=required)
    unknown = _unknown_env_keys()
    if unknown:
        raise ConfigError([f"environment {name}: unknown key" for name in unknown])
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_format_problem(e) for e in exc.errors()]) from None
    if check_paths:
        problems = _check_paths(settings)
        if problems:
            raise ConfigError(problems)
    return settings
