"""Prometheus metrics of the gateway: frames and verdicts per tenant, line and model version, defects per class,
stage latencies (the wait for Triton included), frames in flight, and errors per code. One registry per
gateway (no process-global state), served on its own HTTP port by ``lineqa serve --metrics-port``, together
with the embedded Triton's own metrics (inference counts, queue and compute times per model and version),
read from its loopback-only endpoint at each scrape."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb

logger = logging.getLogger(__name__)

# Seconds: from sub-millisecond decision steps to multi-second Triton deadlines.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STAGES = ("decode", "alignment", "preprocess", "queue", "inference", "postprocess", "decision", "persist", "total")


class TritonMetrics(Collector):
    """Triton's own metrics, fetched from its endpoint when Prometheus scrapes the gateway (none if it is down)."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def describe(self) -> list[Metric]:
        return []  # unknown until scraped: the registry must not collect at registration

    def collect(self) -> Iterable[Metric]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                text = response.read().decode()
        except OSError as exc:
            logger.debug("Triton's metrics are not reachable at %s: %s", self.url, exc)
            return []
        return list(text_string_to_metric_families(text))


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter(
            "lineqa_frames",
            "Frames answered, by tenant, line, verdict and the model version that judged them",
            ["tenant", "line", "verdict", "model", "version"],
            registry=self.registry,
        )
        self.defects = Counter(
            "lineqa_defects",
            "Defects reported, by tenant, line, class and model",
            ["tenant", "line", "class_name", "model"],
            registry=self.registry,
        )
        self.errors = Counter(
            "lineqa_errors", "ERROR results, by tenant and error code", ["tenant", "code"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "lineqa_stage_seconds",
            "Time per pipeline stage (queue: waiting for a free inference slot), by model",
            ["stage", "model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("lineqa_frames_in_flight", "Frames being judged now", registry=self.registry)
        self.inference_limit = Gauge(
            "lineqa_inference_concurrency_limit",
            "Calls the gateway lets be in flight at Triton now (adapts to how fast Triton answers)",
            registry=self.registry,
        )
        self.replays = Counter(
            "lineqa_replays", "Frames answered from their stored result", ["tenant"], registry=self.registry
        )

    def include_triton(self, url: str) -> None:
        """Serve the embedded Triton's metrics (at ``url``, loopback) with the gateway's."""
        self.registry.register(TritonMetrics(url))

    def observe(self, tenant: str, result: pb.InspectionResult) -> None:
        line, model, version = result.frame.line_id, result.model.name, str(result.model.version or "")
        self.frames.labels(tenant, line, pb.Verdict.Name(result.verdict).removeprefix("VERDICT_"), model, version).inc()
        if result.verdict == pb.VERDICT_ERROR:
            self.errors.labels(tenant, pb.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_")).inc()
        if result.replay:
            self.replays.labels(tenant).inc()
            return
        for defect in result.defects:
            self.defects.labels(tenant, line, defect.class_name, model).inc()
        for stage in _STAGES:
            milliseconds = getattr(result.timings, f"{stage}_ms")
            if milliseconds:
                self.stage_seconds.labels(stage, model).observe(milliseconds / 1e3)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP in a background thread; return the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
