"""Training from a cluster: ``lineqa train --dataset cluster/<name>@N`` and fine-tuning from a cluster's base
model, for its members only.

The cluster's base model is put in the registry as ``lineqa models publish`` leaves it (its lineage naming
the cluster pool it was trained on and its trained weights in the weights store: the repository's DeepPCB
asset model), because resolving a base reads only that lineage and those weights; an export and a parity
gate would add minutes and test nothing more here. A tenant that is not a member (never, or no longer) gets
exactly the answer a model or cluster that does not exist gets. A member fine-tunes from it for one epoch
at 64 px: the one training of these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.serving.model_repository import METADATA_NAME, VersionMetadata
from lineqa.training.bases import WeightsStore
from lineqa.vision.yolo_output import HeadKind
from tests.datasets.test_clusters_cli import build_home

pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")

ASSET = Path(__file__).resolve().parents[1] / "assets" / "deeppcb-yolo11n-320.pt"
DEEPPCB = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
TINY = ["--epochs", "1", "--imgsz", "64", "--batch", "2", "--workers", "0", "--device", "cpu"]


def train(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "lineqa.cli", "train", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def register_base(home: Path, name: str, trained_on: str) -> None:
    """Version 1 of registry model ``name``, trained on ``trained_on``, as publishing leaves it."""
    digest = WeightsStore(home / "weights").put(ASSET)
    folder = home / "models" / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"the exported model; resolving a base does not read it")
    lineage = {"dataset": {"ref": trained_on}, "weights_sha256": digest}
    metadata = VersionMetadata(DEEPPCB, (320, 320), HeadKind.NMS, (10, 2100), lineage=lineage)
    (folder / METADATA_NAME).write_text(metadata.to_json())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme and globex members of cluster ``auto`` (cluster/auto@1 built), initech not; ``auto-base@1`` trained
    on cluster/auto@1 in the registry."""
    tmp = tmp_path_factory.mktemp("cluster-training")
    home = tmp / "home"
    build_home(home, tmp)
    register_base(home, "auto-base", "cluster/auto@1")
    return home


def refusal(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_a_non_member_sees_neither_the_clusters_pool_nor_its_base(home: Path) -> None:
    pool = refusal(train(home, "--dataset", "cluster/auto@1", "--tenant", "initech", *TINY))
    assert pool == refusal(train(home, "--dataset", "cluster/nope@1", "--tenant", "initech", *TINY)).replace(
        "nope", "auto"
    )
    assert "no cluster 'auto'" in pool
    base = refusal(train(home, "--dataset", "initech/metal@1", "--base", "auto-base@1", *TINY))
    missing = refusal(train(home, "--dataset", "initech/metal@1", "--base", "nomodel@1", *TINY))
    assert base == missing.replace("nomodel", "auto-base") and "neither a model YAML" in base
    # Nor the platform's own pool run: a cluster's knowledge stays in the cluster.
    assert "neither a model YAML" in refusal(train(home, "--dataset", "pool@1", "--base", "auto-base@1", *TINY))
    # A tenant training for itself names only its own datasets.
    assert "has no dataset acme/metal" in refusal(train(home, "--dataset", "acme/metal@1", "--tenant", "initech"))

    # A member removed: from then on the same as a non-member.
    subprocess.run(
        [sys.executable, "-m", "lineqa.cli", "datasets", "--home", str(home), "clusters", "remove-member", "auto",
         "globex", "--by", "admin@hub"], check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert refusal(train(home, "--dataset", "globex/metal@1", "--base", "auto-base@1", *TINY)) == missing.replace(
        "nomodel", "auto-base"
    )
    assert "no cluster 'auto'" in refusal(train(home, "--dataset", "cluster/auto@1", "--tenant", "globex", *TINY))
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


@pytest.mark.slow
def test_a_member_fine_tunes_from_the_clusters_base(home: Path) -> None:
    done = train(home, "--dataset", "acme/metal@1", "--base", "auto-base@1", "--name", "acme-from-auto", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((home / "runs" / "acme-from-auto" / "run.json").read_text())
    assert record["status"] == "trained" and record["base"]["ref"] == "auto-base@1"
    assert record["dataset"]["ref"] == "acme/metal@1"
    assert record["base"]["class_remap"]  # the DeepPCB head remapped to acme's classes
