"""Metrics: counted from results, exposed over HTTP in Prometheus' text format."""

from __future__ import annotations

import urllib.request

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.metrics import GatewayMetrics


def test_results_are_counted_and_scraped() -> None:
    metrics = GatewayMetrics()
    judged_by = pb.ModelRef(name="pcb", version=3)
    failed = pb.InspectionResult(frame=pb.FrameIdentity(line_id="L1"), verdict=pb.VERDICT_FAIL, model=judged_by)
    failed.defects.add(class_name="short")
    failed.timings.inference_ms = 12.5
    failed.timings.total_ms = 20.0
    error = pb.InspectionResult(frame=pb.FrameIdentity(line_id="L1"), verdict=pb.VERDICT_ERROR)
    error.error.code = pb.ERROR_CODE_MODEL_TIMEOUT
    replay = pb.InspectionResult(
        frame=pb.FrameIdentity(line_id="L1"), verdict=pb.VERDICT_FAIL, replay=True, model=judged_by
    )
    replay.defects.add(class_name="short")
    for result in (failed, error, replay):
        metrics.observe("acme", result)
    port = metrics.serve("127.0.0.1", 0)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'lineqa_frames_total{line="L1",model="pcb",tenant="acme",verdict="FAIL",version="3"} 2.0' in text
    assert 'lineqa_errors_total{code="MODEL_TIMEOUT",tenant="acme"} 1.0' in text
    # a replay is not counted twice
    assert 'lineqa_defects_total{class_name="short",line="L1",model="pcb",tenant="acme"} 1.0' in text
    assert 'lineqa_replays_total{tenant="acme"} 1.0' in text
    assert 'lineqa_stage_seconds_count{model="pcb",stage="inference"} 1.0' in text
