"""``lineqa bench`` as a user runs it, small: two camera streams of real DeepPCB JPEGs through a real
``lineqa serve``, with both baselines. The report must account for every frame sent, every frame judged (no
ERROR, no replay), ordered latency percentiles and positive ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ultralytics", reason="the bench exports the weights and runs Ultralytics: train extra")
pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parent.parent / "assets" / "deeppcb-yolo11n-320.pt"
STREAMS, FRAMES, ROUNDS = 2, 12, 2


def test_bench_reports_every_frame_and_both_baselines(deeppcb_root: Path) -> None:
    command = [
        sys.executable, "-m", "lineqa.cli", "bench", "--weights", str(ASSET), "--images", str(deeppcb_root),
        "--glob", "group00041/*/*_test.jpg", "--max-images", "6", "--imgsz", "320", "--streams", str(STREAMS),
        "--frames", str(FRAMES), "--rounds", str(ROUNDS), "--warmup", "2", "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)

    assert report["streams"] == STREAMS and report["rounds"] == ROUNDS and report["images"]["count"] == 6
    for phase, frames in (("max_rate", ROUNDS * FRAMES), ("at_load", FRAMES)):
        gateway = report["gateway"][phase]
        assert gateway["sent"] == gateway["received"] == gateway["frames"] == frames
        assert gateway["errors"] == 0 and gateway["replays"] == 0
        assert sum(gateway["verdicts"].values()) == frames and "ERROR" not in gateway["verdicts"]
        assert set(gateway["cpu_ms_per_frame"]) == {"client", "gateway", "triton", "other"}
        assert gateway["server_stage_ms_median"]["inference_ms"] > 0
    for row in (report["gateway"]["max_rate"], report["gateway"]["at_load"], report["onnxruntime"],
                report["ultralytics"]):  # fmt: skip
        latency = row["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert row["fps"] > 0
    assert report["onnxruntime"]["frames"] == report["ultralytics"]["frames"] == ROUNDS * FRAMES
    assert report["ultralytics"]["threads"] >= 1
    assert report["gateway"]["at_load"]["target_fps"] == pytest.approx(0.8 * report["gateway"]["max_rate"]["fps"])
    assert set(report["ratios"]) == set(report["ratios_by_round"]) == set(report["targets"]) == {
        "onnxruntime", "ultralytics"}  # fmt: skip
    assert all(ratio > 0 for ratio in report["ratios"].values())
    assert all(len(ratios) == ROUNDS and min(ratios) > 0 for ratios in report["ratios_by_round"].values())
    assert all(isinstance(met, bool) for met in report["targets_met"].values())
