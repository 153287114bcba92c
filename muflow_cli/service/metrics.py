"""The service's Prometheus metrics (GET /metrics): one registry per app, so two apps in one process
(the tests) never share counters. With several worker processes each has its own: scrape each replica."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("muflow_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], registry=r)
        self.latency = Histogram("muflow_request_seconds", "time from the request's start to its response", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.files = Counter("muflow_files", "files scanned, by the table's status", ["status"], registry=r)
        self.faces = Counter("muflow_faces", "faces scored", registry=r)
        self.flagged = Counter("muflow_flagged", "faces with verdict fake", registry=r)
        self.batch_faces = Histogram("muflow_batch_faces", "faces per scoring call", buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("muflow_batch_requests", "requests whose faces one scoring call scored together",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.rejected = Counter("muflow_rejected", "requests refused before any work, by reason", ["reason"], registry=r)

    def gauges(self, admitted: Callable[[], float], scoring: Callable[[], float]) -> None:
        """Queue depths, read when scraped."""
        Gauge("muflow_queue_depth", "requests admitted and not yet answered", registry=self.registry).set_function(admitted)
        Gauge("muflow_scoring_queue_depth", "requests detected and waiting for the scoring thread", registry=self.registry).set_function(scoring)

    def batch(self, faces: int, jobs: int) -> None:
        self.batch_faces.observe(faces)
        self.batch_requests.observe(jobs)

    def scanned(self, files: list[dict]) -> None:
        """Count a scan's files (by status) and faces (as the response gives them)."""
        for f in files:
            self.files.labels(f["status"]).inc()
            ok = [r for r in f["rows"] if r["status"] == "ok"]
            self.faces.inc(len(ok))
            self.flagged.inc(sum(r["verdict"] == "fake" for r in ok))

    def text(self) -> bytes:
        return generate_latest(self.registry)
