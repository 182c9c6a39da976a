"""Mistakes at the training commands get one clear line and exit status 2, and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.datasets.synth import Surface, write_yolo_dataset


def lineqa(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "lineqa.cli", *args], capture_output=True, text=True, env=environment, timeout=120
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    write_yolo_dataset(home / "synth", Surface.METAL, train=4, val=2)
    for step in (("import", "t/metal", str(home / "synth")), ("snapshot", "t/metal")):
        assert lineqa(home, "datasets", *step).returncode == 0
    return home


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "t/metal@1", "--base", "missing.pt"], "not found (nothing is downloaded"),
        (["train", "--dataset", "t/metal@1", "--base", "nomodel@2"], "neither a model YAML, a .pt file nor"),
        (["train", "--dataset", "t/absent@1"], "has no dataset 'absent'"),
        (["train", "--dataset", "other/metal@1"], "has no dataset 'metal'"),
        (["train", "--dataset", "t/metal@1", "--set", "epochs"], "is not KEY=VALUE"),
        (["train", "--dataset", "t/metal@1", "--set", "epochs=3"], "epochs has its own option, --epochs"),
        (["train", "--dataset", "t/metal@1", "--set", "project=/tmp"], "lineqa sets project itself"),
        (["train", "--dataset", "t/metal@1", "--threads", "0"], "--threads 0: give at least 1"),
        (["train"], "give --dataset"),
        (["train", "--resume", "nope"], "no training run 'nope'"),
        (["export", "nope"], "no training run 'nope'"),
        (["evaluate", "--model", "absent@1", "--dataset", "t/metal@1"], "neither an .onnx file nor a registry model"),
        (["models", "publish", "nope", "--name", "m"], "no training run 'nope'"),
        (["models", "promote", "m", "1", "--reason", "r"], "has no version"),
        (["models", "rollback", "m", "--reason", "r"], "has no version"),
        (["models", "promote", "m", "1"], "--reason"),  # the audit trail needs a why
    ],
)
def test_mistakes_are_one_line_errors(home: Path, args: list[str], message: str) -> None:
    done = lineqa(home, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_a_run_that_failed_the_parity_gate_is_not_published(home: Path) -> None:
    run = home / "runs-elsewhere" / "r"
    (run / "weights").mkdir(parents=True)
    (run / "weights" / "best.pt").write_bytes(b"weights")
    record = {"run": "r", "export": {"onnx": str(run / "model.onnx"), "parity": {"passed": False, "differences": 3}}}
    (run / "run.json").write_text(json.dumps(record))
    done = lineqa(home, "models", "publish", str(run), "--name", "m")
    assert done.returncode == 2 and "failed the parity gate (3 differences" in done.stderr
    assert not (home / "models").exists()
