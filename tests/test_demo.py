"""The README's main command: ``lineqa demo`` judges new parts with the detector that ships with lineqa and the
product's golden sample, through ``lineqa serve`` and the camera agent, saying what it does at each step, and
says why when a step fails."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.datasets.synth import line_part
from lineqa.demo import DESIGN, LINE_SEED, SHIPPED_MODEL, recipe_yaml
from lineqa.serving.references import ReferenceStore
from lineqa.vision.recipe import parse_recipe

pytestmark = pytest.mark.slow
PARTS = 24  # the demo's default: 20 defective parts and 4 good ones from its line


def _demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lineqa.cli", "demo", "--home", str(home), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def _overlaps(a: list[float], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def test_the_demo_judges_its_parts_with_the_shipped_detector_and_a_golden_sample(tmp_path: Path) -> None:
    assert SHIPPED_MODEL.is_file() and SHIPPED_MODEL.stat().st_size < 20_000_000
    done = _demo(tmp_path, "--parts", str(PARTS))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ("[1/4] model", "[2/4] home", "[3/4] line", "[4/4] camera"):
        assert step in done.stdout
    lines = [json.loads(line) for line in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()]
    assert [line["part_id"] for line in lines] == [f"part-{i:04d}" for i in range(PARTS)]
    assert "defective parts flagged" in done.stdout and "review-password.txt" in done.stdout

    golden = tmp_path / "demo" / "golden.png"
    reference_id = hashlib.sha256(golden.read_bytes()).hexdigest()
    ReferenceStore(tmp_path / "demo" / "home" / "references").path("demo", reference_id)  # stored for the tenant
    recipe = parse_recipe(recipe_yaml(reference_id))
    assert recipe.reference is not None and recipe.reference.image == reference_id
    assert {line["recipe"]["version"] for line in lines} == {recipe.version}  # every part judged with it
    assert f"golden sample {golden}: parts with anomaly findings" in done.stdout

    boxes = [[label[1:] for label in line_part(DESIGN, LINE_SEED + i).photo.labels] for i in range(PARTS)]
    good = [line for line, truth in zip(lines, boxes, strict=True) if not truth]
    assert len(good) == 4
    assert all(line["verdict"] != "FAIL" for line in good), good
    assert any(line["verdict"] == "PASS" for line in good)  # where a part shows no difference, no added doubt
    for line, truth in zip(lines, boxes, strict=True):
        assert not any(r.startswith("not aligned") for r in line["reasons"]), line  # all of one design
        if truth:
            assert line["verdict"] in ("FAIL", "REVIEW"), line
        for anomaly in (d for d in line["defects"] if d["class"] == "anomaly"):
            assert any(_overlaps(anomaly["box"], box) for box in truth), line  # on a real defect
    with_anomaly = [line for line in lines if any(d["class"] == "anomaly" for d in line["defects"])]
    # Measured: 2 of the 20 defective parts show a difference no detection explains; 0 of the 4 good parts
    # (0 of 32 in benchmarks/bench_demo_golden.py); one good part is the most allowed.
    assert any(line["part_id"] not in {g["part_id"] for g in good} for line in with_anomaly)
    assert sum(line in good for line in with_anomaly) <= 1

    again = _demo(tmp_path, "--parts", "4")  # a second run reuses the home, the model version included
    assert again.returncode == 0, again.stderr[-3000:]
    assert ": metal-defects v" not in again.stdout  # the same model file is not added again
    assert hashlib.sha256(golden.read_bytes()).hexdigest() == reference_id  # the same golden sample, the same id
    again_lines = [json.loads(line) for line in (tmp_path / "demo" / "results.jsonl").read_text().splitlines()]
    assert {line["recipe"]["version"] for line in again_lines} == {recipe.version}


def test_a_failing_step_says_why_and_which_log_to_read(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--parts", "2", "--start-timeout-s", "0.5")
    assert done.returncode == 1
    assert "step 3" in done.stderr or "gateway did not start" in done.stderr, done.stderr
    assert str(tmp_path / "demo" / "gateway.log") in done.stderr
    assert "Traceback" not in done.stderr
