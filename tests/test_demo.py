"""The README's main command: ``lineqa demo`` judges new parts with the detector that ships with lineqa,
through ``lineqa serve`` and the camera agent, saying what it does at each step, and says why when a step fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.demo import SHIPPED_MODEL

pytestmark = pytest.mark.slow


def _demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lineqa.cli", "demo", "--home", str(home), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_the_demo_judges_its_parts_with_the_shipped_detector(tmp_path: Path) -> None:
    assert SHIPPED_MODEL.is_file() and SHIPPED_MODEL.stat().st_size < 20_000_000
    done = _demo(tmp_path, "--parts", "8")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ("[1/4] model", "[2/4] home", "[3/4] line", "[4/4] camera"):
        assert step in done.stdout
    lines = [json.loads(line) for line in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()]
    assert [line["part_id"] for line in lines] == [f"part-{i:04d}" for i in range(8)]
    assert all(line["verdict"] in ("PASS", "FAIL", "REVIEW") for line in lines), lines
    assert "defective parts flagged" in done.stdout and "review-password.txt" in done.stdout
    again = _demo(tmp_path, "--parts", "4")  # a second run reuses the home, the model version included
    assert again.returncode == 0, again.stderr[-3000:]
    assert ": metal-defects v" not in again.stdout  # the same model file is not added again


def test_a_failing_step_says_why_and_which_log_to_read(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--parts", "2", "--start-timeout-s", "0.5")
    assert done.returncode == 1
    assert "step 3" in done.stderr or "gateway did not start" in done.stderr, done.stderr
    assert str(tmp_path / "demo" / "gateway.log") in done.stderr
    assert "Traceback" not in done.stderr
