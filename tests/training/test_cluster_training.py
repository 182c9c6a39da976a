"""A cluster's base model: trained on the cluster's pool, fine-tuned by its members, kept from everyone else.

``lineqa train --dataset cluster/auto@1`` trains the cluster's base here for real (the platform's run, one epoch
at 64 px); it is put in the registry as ``lineqa models publish`` leaves it (its lineage naming the cluster pool,
its trained weights in the weights store), because resolving a base reads only that lineage and those weights,
and an export and a parity gate would add minutes and test nothing more here. A tenant that is not a member
(never, or no longer) gets exactly the answer a model or cluster that does not exist gets; a member fine-tunes
from it. ``lineqa models allow`` and ``publish`` keep the base inside the cluster too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineqa.serving.model_repository import METADATA_NAME, VersionMetadata
from lineqa.training.bases import WeightsStore, file_sha256
from lineqa.vision.yolo_output import HeadKind
from tests.datasets.test_clusters_cli import build_home

pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")

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


def register_base(home: Path, name: str, run: Path, trained_on: str | None = None) -> None:
    """Version 1 of registry model ``name`` from training run ``run``, as publishing leaves it (its lineage
    naming ``trained_on`` instead of the run's dataset if given)."""
    record = json.loads((run / "run.json").read_text())
    digest = WeightsStore(home / "weights").put(run / "weights" / "best.pt")
    folder = home / "models" / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"the exported model; resolving a base does not read it")
    classes = tuple(record["dataset"]["classes"])
    lineage = {"dataset": {"ref": trained_on or record["dataset"]["ref"]}, "weights_sha256": digest}
    anchors = sum((64 // stride) ** 2 for stride in (8, 16, 32))
    metadata = VersionMetadata(classes, (64, 64), HeadKind.NMS, (4 + len(classes), anchors), lineage=lineage)
    (folder / METADATA_NAME).write_text(metadata.to_json())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme and globex members of cluster ``auto`` (cluster/auto@1 built), initech not; ``auto-base@1`` trained
    on cluster/auto@1 in the registry."""
    tmp = tmp_path_factory.mktemp("cluster-training")
    home = tmp / "home"
    build_home(home, tmp)
    trained = train(home, "--dataset", "cluster/auto@1", "--base", "yolo11n.yaml", "--name", "auto-base-run", *TINY)
    assert trained.returncode == 0, trained.stderr[-3000:]
    register_base(home, "auto-base", home / "runs" / "auto-base-run")
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
    assert {run.name for run in (home / "runs").iterdir()} <= {"auto-base-run", "acme-from-auto"}  # none half-made


@pytest.mark.slow
def test_a_member_fine_tunes_from_the_clusters_base(home: Path) -> None:
    done = train(home, "--dataset", "acme/metal@1", "--base", "auto-base@1", "--name", "acme-from-auto", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((home / "runs" / "acme-from-auto" / "run.json").read_text())
    assert record["status"] == "trained" and record["base"]["ref"] == "auto-base@1"
    assert record["dataset"]["ref"] == "acme/metal@1"
    base_weights = home / "runs" / "auto-base-run" / "weights" / "best.pt"
    assert record["base"]["sha256"] == file_sha256(base_weights) and not record["base"]["class_remap"]


def lineqa(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    command = [sys.executable, "-m", "lineqa.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)


def test_grants_and_new_versions_keep_a_clusters_base_inside_the_cluster(home: Path) -> None:
    for tenant in ("acme", "globex", "initech"):
        lineqa(home, "admin", "tenant", "add", tenant)  # the gateway's tenants (the catalog has its own)
    outside = refusal(lineqa(home, "models", "allow", "auto-base", "initech", "--reason", "asked for it"))
    assert "auto-base v1 was trained on cluster auto's pool and tenant initech is not a member" in outside
    granted = lineqa(home, "models", "allow", "auto-base", "acme", "--reason", "member of auto")
    assert granted.returncode == 0, granted.stderr
    history = lineqa(home, "models", "grants", "auto-base").stdout
    assert "allow    acme" in history and "initech" not in history

    # A platform model trained on the platform pool, granted to initech: a cluster-trained run may not become
    # its next version (the grant would carry the cluster's knowledge out), and nothing is exported first.
    register_base(home, "pcb-base", home / "runs" / "auto-base-run", trained_on="pool@1")
    assert lineqa(home, "models", "allow", "pcb-base", "initech", "--reason", "pilot").returncode == 0
    published = refusal(lineqa(home, "models", "publish", "auto-base-run", "--name", "pcb-base"))
    assert "pcb-base is granted to initech, not members of cluster auto" in published
    assert sorted(p.name for p in (home / "models" / "pcb-base").iterdir()) == ["1"]
    assert "export" not in json.loads((home / "runs" / "auto-base-run" / "run.json").read_text())
