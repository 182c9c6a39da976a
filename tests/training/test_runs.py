"""A run's starting points and its life: a base trained on other classes, and resuming an interrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parents[1] / "assets" / "deeppcb-yolo11n-320.pt"


def class_rows(weights: Path) -> dict[str, torch.Tensor]:
    """The class-convolution weights of every detection scale, keyed by state-dict name."""
    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    model = checkpoint.get("ema") or checkpoint["model"]
    return {
        k: v.float() for k, v in model.state_dict().items() if k.startswith("model.23.cv3.") and k.endswith(".2.weight")
    }


def test_remapped_head_keeps_known_classes_and_adds_new_ones(tmp_path: Path) -> None:
    out = tmp_path / "remapped.pt"
    report = adapter.remap_classes(ASSET, ["short", "scratch", "open"], out)
    assert report["kept"] == ["short", "open"] and report["rows"] > 0
    assert adapter.checkpoint_names(out) == ["short", "scratch", "open"]
    before, after = class_rows(ASSET), class_rows(out)
    assert before.keys() == after.keys() and len(after) == 3  # one per detection scale
    base = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
    for key in after:
        assert after[key].shape[0] == 3
        assert torch.equal(after[key][0], before[key][base.index("short")])
        assert torch.equal(after[key][2], before[key][base.index("open")])
        assert not any(torch.equal(after[key][1], row) for row in before[key])  # "scratch" starts fresh
    # Everything else is carried over unchanged, so the backbone's training is not lost.
    old = torch.load(ASSET, map_location="cpu", weights_only=False)
    new = torch.load(out, map_location="cpu", weights_only=False)["model"].state_dict()
    old_state = (old.get("ema") or old["model"]).float().state_dict()
    assert torch.equal(new["model.0.conv.weight"], old_state["model.0.conv.weight"])
    ultralytics = adapter.load_ultralytics()
    (result,) = ultralytics.YOLO(str(out)).predict(torch.zeros(1, 3, 320, 320), verbose=False)
    assert result.names == {0: "short", 1: "scratch", 2: "open"}


def lineqa(home: Path, *args: str) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "lineqa.cli", *args], env=environment)


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for step in (
        ("datasets", "synth", str(tmp_path / "synth"), "--count", "16", "--val", "4", "--size", "160"),
        ("datasets", "import", "t/metal", str(tmp_path / "synth")),
        ("datasets", "snapshot", "t/metal"),
    ):
        assert lineqa(home, *step).wait(120) == 0
    options = ("--epochs", "3", "--imgsz", "160", "--batch", "8", "--workers", "0", "--device", "cpu")
    process = lineqa(
        home, "train", "--dataset", "t/metal@1", "--base", "yolo11n.yaml", "--name", "r", *options, "--threads", "1"
    )
    run_dir = home / "runs" / "r"
    last = run_dir / "weights" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint be written whole
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = (run_dir / "results.csv").read_text().strip().count("\n")
    assert 1 <= epochs_done < 3, "the run must be stopped part-way for this test to mean anything"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "training"
    threads_used = "CPU training threads: {}"
    assert threads_used.format(1) in (run_dir / "train.log").read_text()
    assert lineqa(home, "train", "--resume", "r").wait(300) == 0
    # Resumed without --threads, it trains on every usable core (Ultralytics alone would leave one idle).
    assert threads_used.format(len(os.sched_getaffinity(0))) in (run_dir / "train.log").read_text()
    epochs = [int(float(row.split(",")[0])) for row in (run_dir / "results.csv").read_text().strip().splitlines()[1:]]
    # Killed after an epoch's metrics row but before its checkpoint, that epoch is trained (and logged) again.
    assert sorted(set(epochs)) == [1, 2, 3] and epochs[-1] == 3 and len(epochs) <= 4
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "trained" and record["resumed_at"] and (run_dir / "weights" / "best.pt").is_file()
    assert record["ultralytics_settings"]["datasets_dir"] == str(run_dir / "data")
    assert record["hyperparameters"]["threads"] == 1 and record["resumed_threads"] == len(os.sched_getaffinity(0))
