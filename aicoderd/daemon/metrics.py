"""``GET /metrics``: the status in Prometheus' text format (imported when first scraped, so an
unscraped daemon never loads prometheus_client)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from aicoderd import protocol


def exposition(status: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(status))
    return bytes(generate_latest(registry))


class _StatusCollector:
    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status

    def collect(self) -> Any:
        s = self.status
        yield GaugeMetricFamily("aicoderd_uptime_seconds", "Seconds since start", s["uptime_s"])
        docs = GaugeMetricFamily("aicoderd_documents", "Documents by status", labels=["status"])
        for key in ("total", "failed", "retired", "pending"):
            docs.add_metric([key if key != "total" else "stored"], s["documents"][key])
        yield docs
        src = GaugeMetricFamily(
            "aicoderd_documents_by_source", "Stored documents by source", labels=["source"]
        )
        for name, n in s["documents"]["by_source"].items():
            src.add_metric([name], n)
        yield src
        fb = CounterMetricFamily(
            "aicoderd_feedback_records", "Feedback lines read", labels=["validity"]
        )
        fb.add_metric(["valid"], s["feedback"]["valid"])
        fb.add_metric(["invalid"], s["feedback"]["invalid"])
        yield fb
        jobs = GaugeMetricFamily("aicoderd_jobs", "Jobs by state", labels=["state"])
        for state in protocol.JOB_STATES:
            jobs.add_metric([state], s["jobs"]["by_state"].get(state, 0))
        yield jobs
