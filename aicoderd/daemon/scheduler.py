"""Scheduled fetching: one APScheduler 3 trigger per enabled source, on the daemon's loop.

A fire only queues a ``source.fetch`` job, and not while one for that source is queued or
running: at most one per source. Triggers have jitter, an explicit misfire grace, coalescing
and ``max_instances=1``; the job store is in memory because the schedules come from the
config. Catch-up after downtime comes from the persisted run table (``source_runs``), like
anacron: a source that never ran, whose last run is older than its interval, or that missed a
cron fire while the daemon was down, fires soon after start. An interval keeps counting from
the last run, so a restart neither delays nor repeats a fetch.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from aicoderd import log
from aicoderd.config import Settings, interval_seconds
from aicoderd.daemon import schemas
from aicoderd.daemon.runner import JobQueue
from aicoderd.errors import JobError, NotFound
from aicoderd.sources.base import AnySource
from aicoderd.sources.job_kinds import FETCH
from aicoderd.store import Store

if TYPE_CHECKING:  # APScheduler loads with the first source (an installation without any
    # network source never pays for it)
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.base import BaseTrigger
    from apscheduler.triggers.cron import CronTrigger

logger = log.get(__name__)

CATCH_UP_MAX_DELAY = 60.0  # an overdue source fires within min(jitter_seconds, this) of start
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class SourceScheduler:
    def __init__(self, store: Store, jobs: JobQueue, wake: Callable[[], None]) -> None:
        self.store = store
        self.jobs = jobs
        self.wake = wake
        self.settings: Settings | None = None
        self._configured: dict[str, str] = {}  # source name → its config as JSON
        self._scheduler: AsyncIOScheduler | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self, settings: Settings) -> None:
        self.configure(settings)

    def _started(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
            self._scheduler.start()
        return self._scheduler

    def configure(self, settings: Settings) -> None:
        """(Re)build the triggers; sources whose config did not change keep theirs."""
        self.settings = settings
        wanted = {s.name: s for s in settings.sources if s.enabled}
        if wanted:
            self._started()
        for name in list(self._configured):
            if name not in wanted or wanted[name].model_dump_json() != self._configured[name]:
                self._remove(name)
        runs = self.store.sources.last_runs()
        for name, source in wanted.items():
            if name not in self._configured:
                self._add(source, runs.get(name))
                self._configured[name] = source.model_dump_json()

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    # -- triggers ----------------------------------------------------------------------------

    def _add(self, source: AnySource, last: dict[str, Any] | None) -> None:
        from apscheduler.triggers.date import DateTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        assert self._scheduler is not None
        tz = self._scheduler.timezone
        now = datetime.now(tz)
        last_started = None if last is None else datetime.fromtimestamp(last["started"], tz)
        soon = now + timedelta(seconds=random.uniform(0, _catch_up_window(source)))
        seconds = interval_seconds(source.schedule)
        options = {
            "args": [source.name],
            "misfire_grace_time": int(source.misfire_grace_seconds),
            "coalesce": True,
            "max_instances": 1,
            "replace_existing": True,
        }
        trigger: BaseTrigger
        if seconds is not None:
            due = None if last_started is None else last_started + timedelta(seconds=seconds)
            missed = due is None or due <= now
            start = soon + timedelta(seconds=seconds) if missed or due is None else due
            trigger = IntervalTrigger(
                seconds=seconds, start_date=start, timezone=tz, jitter=_jitter(source)
            )
        else:
            trigger = cron_trigger(source.schedule, tz, _jitter(source))
            fire = None if last_started is None else trigger.get_next_fire_time(None, last_started)
            missed = last_started is None or (fire is not None and fire <= now)
        if missed:  # never ran, or overdue after downtime: once, soon
            catch_up = {**options, "args": [source.name, "catch-up"]}
            self._scheduler.add_job(
                self._fire, DateTrigger(soon), id=f"catch-up:{source.name}", **catch_up
            )
        self._scheduler.add_job(self._fire, trigger, id=f"source:{source.name}", **options)
        logger.info("source.scheduled", source=source.name, next_run=self.next_run(source.name))

    def _remove(self, name: str) -> None:
        assert self._scheduler is not None
        for prefix in ("source:", "catch-up:"):
            if self._scheduler.get_job(prefix + name) is not None:
                self._scheduler.remove_job(prefix + name)
        self._configured.pop(name, None)

    async def _fire(self, name: str, trigger: str = "schedule") -> None:
        try:
            job = self.submit(name, force=False, trigger=trigger)
        except (JobError, NotFound) as exc:
            logger.info("source.fire_skipped", source=name, reason=str(exc))
            return
        logger.info("source.fired", source=name, job_id=job["id"], trigger=trigger)

    def next_run(self, name: str) -> float | None:
        if self._scheduler is None:
            return None
        times = [
            job.next_run_time.timestamp()
            for prefix in ("source:", "catch-up:")
            if (job := self._scheduler.get_job(prefix + name)) is not None and job.next_run_time
        ]
        return min(times, default=None)

    # -- control and status ------------------------------------------------------------------

    def submit(self, name: str, *, force: bool, trigger: str = "manual") -> dict[str, Any]:
        """Queue a fetch of ``name``; refused (409) while one is queued or running."""
        if self.settings is None or self.settings.source(name) is None:
            raise NotFound(f"no source named {name!r} in the configuration")
        active = self.active_jobs().get(name)
        if active is not None:
            raise JobError(f"source {name} already has job {active['id']} {active['state']}")
        job = self.jobs.submit(FETCH.name, {"source": name, "force": force, "trigger": trigger})
        self.wake()
        return job

    def active_jobs(self) -> dict[str, dict[str, Any]]:
        """Source name → its queued or running fetch job."""
        out: dict[str, dict[str, Any]] = {}
        for job in self.store.jobs.active((FETCH.name,)):
            if job["params"]:
                out.setdefault(str(job["params"].get("source")), job)
        return out

    def read(self) -> dict[str, Any]:
        """What status needs from SQLite (call it in a worker thread)."""
        return {"runs": self.store.sources.last_runs(), "active": self.active_jobs()}

    def status(self, stored: dict[str, Any]) -> list[schemas.SourceStatus]:
        """Per-source status from :meth:`read`'s result plus the scheduler's next runs."""
        if self.settings is None:
            return []
        out = []
        for source in self.settings.sources:
            run = stored["runs"].get(source.name) or {}
            job = stored["active"].get(source.name)
            out.append(
                schemas.SourceStatus(
                    **{
                        "name": source.name,
                        "type": source.type,
                        "enabled": source.enabled,
                        "schedule": source.schedule,
                        "last_run": run.get("finished"),
                        "outcome": run.get("outcome"),
                        **{k: run.get(k, 0) for k in _COUNTS},
                        "last_error": run.get("error"),
                        "next_run": self.next_run(source.name) if source.enabled else None,
                        "running_job": job["id"] if job else None,
                        "job_state": job["state"] if job else None,
                    }
                )
            )
        return out


_COUNTS = ("added", "updated", "unchanged", "retired", "failed")


def cron_trigger(expr: str, tz: tzinfo, jitter: int | None) -> CronTrigger:
    """A five-field crontab line with crontab's weekdays (0 or 7 = Sunday); APScheduler 3's
    own ``from_crontab`` counts them from Monday."""
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, day_of_week = expr.split()
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=cron_weekdays(day_of_week),
        timezone=tz,
        jitter=jitter,
    )


def cron_weekdays(field: str) -> str:
    """Crontab day-of-week numbers as names: ``1-5`` → ``mon,tue,wed,thu,fri``."""
    if field == "*" or not any(c.isdigit() for c in field):
        return field
    try:
        days = _day_numbers(field)
    except ValueError:  # names and numbers mixed: leave it to APScheduler
        return field
    return ",".join(_CRON_DAYS[d] for d in sorted(set(days)))


def _day_numbers(field: str) -> list[int]:
    days: list[int] = []
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first, last = (int(x) for x in span.split("-"))
        elif step:
            first, last = int(span), 6
        else:
            first = last = int(span)
        days += [d % 7 for d in range(first, last + 1, int(step or 1))]
    return days


def _jitter(source: AnySource) -> int | None:
    return int(source.jitter_seconds) or None


def _catch_up_window(source: AnySource) -> float:
    return min(source.jitter_seconds, CATCH_UP_MAX_DELAY)
