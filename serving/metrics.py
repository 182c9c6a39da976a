"""Prometheus metrics of the gateway: frames and verdicts per line, defects per class, stage latencies,
frames in flight, and errors per code. One registry per gateway (no process-global state), served on its own
HTTP port by ``lineqa serve --metrics-port``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb

# Seconds: from sub-millisecond decision steps to multi-second Triton deadlines.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_STAGES = ("decode", "preprocess", "inference", "postprocess", "decision", "persist", "total")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter(
            "lineqa_frames", "Frames answered, by line and verdict", ["line", "verdict"], registry=self.registry
        )
        self.defects = Counter(
            "lineqa_defects", "Defects reported, by line and class", ["line", "class_name"], registry=self.registry
        )
        self.errors = Counter("lineqa_errors", "ERROR results, by error code", ["code"], registry=self.registry)
        self.stage_seconds = Histogram(
            "lineqa_stage_seconds", "Time per pipeline stage", ["stage"], buckets=_BUCKETS, registry=self.registry
        )
        self.in_flight = Gauge("lineqa_frames_in_flight", "Frames being judged now", registry=self.registry)
        self.replays = Counter("lineqa_replays", "Frames answered from their stored result", registry=self.registry)

    def observe(self, result: pb.InspectionResult) -> None:
        line = result.frame.line_id
        self.frames.labels(line, pb.Verdict.Name(result.verdict).removeprefix("VERDICT_")).inc()
        if result.verdict == pb.VERDICT_ERROR:
            self.errors.labels(pb.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_")).inc()
        if result.replay:
            self.replays.inc()
            return
        for defect in result.defects:
            self.defects.labels(line, defect.class_name).inc()
        for stage in _STAGES:
            milliseconds = getattr(result.timings, f"{stage}_ms")
            if milliseconds:
                self.stage_seconds.labels(stage).observe(milliseconds / 1e3)

    def serve(self, host: str, port: int) -> int:
        """Expose ``/metrics`` over HTTP in a background thread; return the bound port."""
        server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
