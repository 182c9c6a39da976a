"""The training loop end to end, as an ML engineer runs it, against a running gateway.

A few real DeepPCB boards (with their defect-free templates as good parts) are imported, split and
snapshotted; ``lineqa train`` fine-tunes the repository's DeepPCB asset model for one epoch, ``lineqa
evaluate`` and ``lineqa export`` (parity gate) check it, ``lineqa models publish`` puts it in the repository
and a ``lineqa serve`` started on that home judges frames with it. A second run fine-tuned from the registry
model is published, refused by the promotion gate, promoted with a recorded override, and rolled back; the
running gateway follows each change without a restart and without failing a frame.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.readiness import wait_until_serving
from tests.helpers.deeppcb import deeppcb_pairs
from tests.helpers.processes import stop

pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")
pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parents[1] / "assets" / "deeppcb-yolo11n-320.pt"
BOARDS = 12
# One gentle epoch: the asset model stays good, and the run is quick on two cores.
TRAIN = ["--epochs", "1", "--imgsz", "320", "--batch", "4", "--workers", "0", "--device", "cpu"]
TRAIN += ["--set", "lr0=0.0001", "--set", "warmup_epochs=0", "--set", "mosaic=0", "--set", "close_mosaic=0"]


def lineqa(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "lineqa.cli", *args], capture_output=True, text=True, env=environment, timeout=600
    )
    if check:
        assert done.returncode == 0, f"lineqa {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def deeppcb_subset(root: Path, out: Path) -> Path:
    """The first boards of DeepPCB in its own layout (images, templates, annotations, a list file)."""
    lines = []
    for image, annotation in deeppcb_pairs(root)[:BOARDS]:
        for source in (image, image.with_name(image.name.replace("_test", "_temp")), annotation):
            target = out / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        listed = image.relative_to(root).as_posix().replace("_test.jpg", ".jpg")
        lines.append(f"{listed} {annotation.relative_to(root).as_posix()}\n")
    (out / "trainval.txt").write_text("".join(lines))
    return out


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[Path, LocalPlant, list[subprocess.Popen[str]]]]:
    home = tmp_path / "home"
    plant = provision_local_plant(home, tenant="acme", line="smt-1", cameras=("aoi-1",))
    processes: list[subprocess.Popen[str]] = []
    yield home, plant, processes
    for process in processes:
        stop(process)


def judge(channel: grpc.Channel, plant: LocalPlant, image: bytes, sequence: int) -> pb.InspectionResult:
    identity = pb.FrameIdentity(camera_id="aoi-1", line_id="smt-1", sequence=sequence)
    frame = pb.Frame(
        identity=identity, recipe_id="pcb-top", image=pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=image)
    )
    stub = pb_grpc.InspectionServiceStub(channel)
    response = stub.Inspect(pb.InspectRequest(frame=frame), metadata=plant.call_metadata("aoi-1"), timeout=30)
    result: pb.InspectionResult = response.result
    assert result.verdict != pb.VERDICT_ERROR, result.error.message
    return result


def wait_for_version(channel: grpc.Channel, plant: LocalPlant, image: bytes, first: int, version: int) -> int:
    """Send frames until one is judged by ``version``; every frame on the way must get a real verdict."""
    deadline = time.monotonic() + 120
    sequence = first
    while time.monotonic() < deadline:
        sequence += 1
        if judge(channel, plant, image, sequence).model.version == version:
            return sequence
        time.sleep(0.5)
    raise AssertionError(f"the gateway did not switch to version {version} within 120 s")


def test_train_evaluate_export_publish_promote_rollback_with_a_running_gateway(
    deeppcb_root: Path, tmp_path: Path, gateway: tuple[Path, LocalPlant, list[subprocess.Popen[str]]]
) -> None:
    home, plant, processes = gateway
    source = deeppcb_subset(deeppcb_root, tmp_path / "deeppcb")
    lineqa(home, "datasets", "import", "acme/pcb", str(source), "--templates")
    lineqa(home, "datasets", "split", "acme/pcb", "--ratios", "train=0.5,val=0.25,test=0.25", "--group-by", "name")
    lineqa(home, "datasets", "snapshot", "acme/pcb")

    lineqa(home, "train", "--dataset", "acme/pcb@1", "--base", str(ASSET), "--name", "first", *TRAIN)
    record = json.loads((home / "runs" / "first" / "run.json").read_text())
    assert record["status"] == "trained" and record["dataset"]["ref"] == "acme/pcb@1"
    assert record["base"]["kind"] == "pt" and record["code"]["ultralytics"]
    assert record["hyperparameters"]["imgsz"] == 320 and record["hyperparameters"]["lr0"] == 0.0001

    evaluated = lineqa(home, "evaluate", "--run", "first")
    metrics = json.loads((home / "runs" / "first" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["coco_check"]["agrees"] and metrics["mAP50"] > 0.2, evaluated.stdout
    assert metrics["inspection"]["good_parts"] > 0 and metrics["inspection"]["defective_parts"] > 0
    assert set(metrics["per_class"]) == {"open", "short", "mousebite", "spur", "copper", "pin-hole"}
    for picture in ("pr_curves.png", "confusion_matrix.png", "operating_curve.png"):
        assert cv2.imread(str(home / "runs" / "first" / "eval" / "test" / picture)) is not None

    exported = lineqa(home, "export", "first")
    assert "parity passed" in exported.stdout
    published = lineqa(home, "models", "publish", "first", "--name", "pcb")
    assert "pcb v1" in published.stdout

    (tmp_path / "pcb-top.yaml").write_text("id: pcb-top\nmodel: {name: pcb}\n")
    lineqa(home, "models", "allow", "pcb", "acme", "--reason", "the plant's first model")  # a platform model
    lineqa(home, "recipes", "set", "acme/pcb-top", str(tmp_path / "pcb-top.yaml"), "--reason", "first recipe")
    port = free_port()
    log = (tmp_path / "gateway.log").open("w")
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port), "--metrics-port", "0"]
    processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True))
    wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 180, process=processes[0])
    image = (source / deeppcb_pairs(source)[-1][0].relative_to(source)).read_bytes()
    with grpc.secure_channel(f"localhost:{port}", plant.channel_credentials()) as channel:
        assert judge(channel, plant, image, 1).model.version == 1

        # A second run from the registry model: published, it waits beside the line.
        lineqa(home, "train", "--dataset", "acme/pcb@1", "--base", "pcb@1", "--name", "second", *TRAIN)
        assert json.loads((home / "runs" / "second" / "run.json").read_text())["base"]["ref"] == "pcb@1"
        lineqa(home, "evaluate", "--run", "second")
        lineqa(home, "models", "publish", "second", "--name", "pcb")  # exports and checks parity itself
        assert judge(channel, plant, image, 2).model.version == 1

        # The gate: demanding an improvement of 0.5 mAP refuses it; nothing changes on the line.
        refused = lineqa(home, "models", "promote", "pcb", "2", "--margin", "-0.5", "--reason", "try", check=False)
        assert refused.returncode == 2 and "is worse than v1" in refused.stderr
        assert judge(channel, plant, image, 3).model.version == 1
        lineqa(home, "models", "promote", "pcb", "2", "--margin", "-0.5", "--force", "--reason", "ci override")
        sequence = wait_for_version(channel, plant, image, 3, 2)

        lineqa(home, "models", "rollback", "pcb", "--reason", "back to the first")
        wait_for_version(channel, plant, image, sequence, 1)

    shown = json.loads(lineqa(home, "models", "show", "pcb@2").stdout)
    lineage = shown["lineage"]
    assert lineage["run"] == "second" and lineage["dataset"]["ref"] == "acme/pcb@1"
    assert lineage["base"]["ref"] == "pcb@1" and lineage["parity"]["passed"]
    assert lineage["evaluation"]["mAP50"] > 0 and (home / "weights" / f"{lineage['weights_sha256']}.pt").is_file()
    audit = [(e["action"], e["previous"], e["version"], e["override"], e["reason"]) for e in shown["audit"]]
    assert audit == [  # what was on the line before each change, and after it
        ("publish", None, 1, False, ""),
        ("promote", None, 1, False, "first version of the model"),
        ("publish", 1, 2, False, ""),
        ("promote", 1, 2, True, "ci override"),
        ("rollback", 2, 1, False, "back to the first"),
    ]
