"""Soak, the short version (RELIABILITY.md 21; ``benchmarks/soak.py`` is the long one): 4 camera streams at 80 %
of the gateway's measured capacity. No ERROR (none is injected), p99 reported, the gateway's memory grows less
than 50 MB after warm-up, its file descriptors and threads stay flat."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from lineqa.datasets.synth import Surface, generate_part
from tests.helpers.soak import soak

pytestmark = pytest.mark.slow


def test_four_streams_at_eighty_percent_hold_steady(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    jpegs = [cv2.imencode(".jpg", generate_part(Surface.METAL, seed, 320).image)[1].tobytes() for seed in range(16)]
    report = soak(tmp_path, tiny_models["yolo11n"], jpegs, streams=4, warmup_s=10, duration_s=40)
    print(f"\n{report.summary()}")
    assert report.errors == {}
    assert report.frames > 40 and len(report.samples) >= 20
    assert report.growth("gateway_rss_mb") < 50
    assert report.growth("fds") <= 4 and report.growth("threads") <= 4
