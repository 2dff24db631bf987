"""Scheduled sources in the real daemon: catch-up after downtime from the run table, at most
one fetch per source, `aicoder sources` / `aicoder fetch`, status, reload."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from werkzeug import Request, Response

from aicoderd.daemon.scheduler import cron_weekdays
from aicoderd.daemon.schemas import SourceList, Status
from tests.conftest import DaemonProc, wait_for
from tests.integration.site import Site, docs_page

HOUR = 3600.0


@pytest.fixture
def site() -> Iterator[Site]:
    with Site.serve() as s:
        s.page("/docs/", docs_page("Index", "<p>Start.</p>", ["a.html", "b.html"]))
        s.page("/docs/a.html", docs_page("A", "<p>Page A.</p>"))
        s.page("/docs/b.html", docs_page("B", "<p>Page B.</p>"))
        yield s


def web(site: Site, name: str = "docs", **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "web",
        "urls": [site.url("/docs/")],
        "schedule": "1h",
        "jitter_seconds": 0,
        "requests_per_second": 1000,
        "backoff_seconds": 0.05,
        "retries": 1,
        **options,
    }


def sources(d: DaemonProc) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in d.status()["sources"]}


def fetch_jobs(d: DaemonProc) -> list[dict[str, Any]]:
    jobs = d.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    return [j for j in jobs if j["kind"] == "source.fetch"]


def ran(d: DaemonProc, name: str, times: int = 1) -> Callable[[], bool]:
    def check() -> bool:
        done = [j for j in fetch_jobs(d) if j["params"]["source"] == name]
        finished = [j for j in done if j["state"] in ("succeeded", "failed")]
        return len(finished) >= times and sources(d)[name]["running_job"] is None

    return check


def test_a_new_source_runs_soon_after_start_and_reports_status(
    make_daemon: Callable[..., DaemonProc], site: Site
) -> None:
    d = make_daemon(sources=[web(site)]).start()
    wait_for(ran(d, "docs"), timeout=30)
    status = d.status()
    Status.model_validate(status)
    docs = sources(d)["docs"]
    assert (docs["outcome"], docs["added"], docs["failed"], docs["last_error"]) == (
        "succeeded",
        3,
        0,
        None,
    )
    assert (docs["type"], docs["enabled"], docs["schedule"]) == ("web", True, "1h")
    assert docs["next_run"] == pytest.approx(docs["last_run"] + HOUR, abs=30)
    assert status["documents"]["by_source"]["web:docs"] == 3
    (job,) = fetch_jobs(d)
    assert job["params"] == {"source": "docs", "force": False, "trigger": "catch-up"}

    listed = d.cli("sources", "--json")
    assert listed.returncode == 0, listed.stderr
    assert SourceList.model_validate(json.loads(listed.stdout)).sources[0].added == 3
    human = d.cli("sources")
    assert human.returncode == 0 and "docs" in human.stdout and "+3" in human.stdout
    assert "source docs (web): succeeded at" in d.cli("status").stdout

    again = d.cli("fetch", "docs", "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 added, 0 updated, 3 unchanged" in again.stdout
    assert "source.fetch" in d.cli("jobs").stdout


def test_one_fetch_per_source_and_clear_failures(
    make_daemon: Callable[..., DaemonProc], site: Site
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(2)
        return Response(docs_page("Slow", "<p>Slow page.</p>"), content_type="text/html")

    site.handler("/slow/", slow)
    site.handler("/feed.xml", lambda r: Response("down", status=500))
    d = make_daemon(
        sources=[
            web(site, "slow", urls=[site.url("/slow/")], enabled=False),
            {
                "name": "bad",
                "type": "feed",
                "url": site.url("/feed.xml"),
                "enabled": False,
                "retries": 0,
            },
        ]
    ).start()
    assert sources(d)["slow"]["next_run"] is None  # disabled: not scheduled

    first = d.client.post("/v1/sources/slow/fetch")
    assert first.status_code == 201, first.text
    busy = d.client.post("/v1/sources/slow/fetch")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "job_error"
    assert sources(d)["slow"]["running_job"] == first.json()["id"]
    unknown = d.client.post("/v1/sources/nope/fetch")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert d.cli("fetch", "nope").returncode == 1
    wait_for(ran(d, "slow"), timeout=30)
    assert sources(d)["slow"]["added"] == 1

    failed = d.cli("fetch", "bad", "--wait")
    assert failed.returncode == 1
    bad = sources(d)["bad"]
    assert bad["outcome"] == "failed" and "http_500" in bad["last_error"]


def shift_runs(d: DaemonProc, seconds: float) -> None:
    """Pretend the recorded runs happened ``seconds`` earlier (the daemon is stopped)."""
    db = sqlite3.connect(d.data_dir / "state.db")
    with db:
        db.execute(
            "UPDATE source_runs SET started = started - ?, finished = finished - ?",
            (seconds, seconds),
        )
    db.close()


def test_catch_up_after_downtime_from_the_run_table(
    make_daemon: Callable[..., DaemonProc], site: Site
) -> None:
    nightly = web(site, "nightly", schedule="0 3 * * *")
    d = make_daemon(sources=[web(site), nightly]).start()
    wait_for(lambda: ran(d, "docs")() and ran(d, "nightly")(), timeout=30)  # never ran: both run
    assert d.stop() == 0

    d.start()  # back at once: nothing is overdue
    time.sleep(1.5)
    assert len(fetch_jobs(d)) == 2
    now = time.time()
    s = sources(d)
    assert s["docs"]["next_run"] == pytest.approx(s["docs"]["last_run"] + HOUR, abs=30)
    nxt = datetime.fromtimestamp(s["nightly"]["next_run"])
    assert (nxt.hour, nxt.minute) == (3, 0) and now < s["nightly"]["next_run"] <= now + 24 * HOUR
    assert d.stop() == 0

    shift_runs(d, 2 * 24 * HOUR)  # down for two days: an interval and a cron fire missed
    d.start()
    wait_for(lambda: ran(d, "docs", 2)() and ran(d, "nightly", 2)(), timeout=30)
    triggers = [j["params"]["trigger"] for j in fetch_jobs(d)]
    assert triggers == ["catch-up"] * 4  # never ran (first start), then overdue
    assert sources(d)["docs"]["unchanged"] == 3


def test_reload_schedules_new_sources_and_keeps_the_old_config_when_invalid(
    make_daemon: Callable[..., DaemonProc], site: Site
) -> None:
    d = make_daemon().start()
    assert d.status()["sources"] == []
    d.write_config({**d.config, "sources": [web(site)]})
    assert d.client.post("/v1/reload").json()["reloaded"] is True
    wait_for(ran(d, "docs"), timeout=30)

    d.write_config({**d.config, "sources": [web(site, schedule="61 * * * *")]})
    refused = d.client.post("/v1/reload")
    assert refused.status_code == 400
    assert any("sources.0" in p and "schedule" in p for p in refused.json()["problems"])
    assert sources(d)["docs"]["schedule"] == "1h"

    check = subprocess.run(
        [sys.executable, "-m", "aicoderd", "--config", str(d.config_path), "--check-config"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 2 and "schedule" in check.stderr


def test_cron_weekdays_count_from_sunday_as_crontab_does() -> None:
    assert cron_weekdays("0") == "sun" and cron_weekdays("7") == "sun"
    assert cron_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert cron_weekdays("*/2") == "sun,tue,thu,sat"
    assert cron_weekdays("mon-fri") == "mon-fri" and cron_weekdays("*") == "*"
