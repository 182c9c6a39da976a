"""Parity with Ultralytics: ``lineqa predict`` gives the detections Ultralytics' own ``predict`` gives.

Two small models trained from Ultralytics' own model YAMLs (no pretrained weights exist on these machines) on
DeepPCB boards, committed with the scripts that made them (training them here cost minutes a run), are exported
to ONNX by Ultralytics, then run on real DeepPCB and NEU-DET images through ``lineqa predict`` (a subprocess,
as a user runs it) and through Ultralytics' ``predict`` on the same ONNX file and on the trained ``.pt``
weights. Three heads are covered: YOLO11 (NMS), YOLO26
end-to-end (NMS-free) and YOLO26 exported with its NMS head. Ultralytics is asked for the full letterbox
(``rect=False``): lineqa letterboxes every image to the model's full input size, as the gateway's served
models take it, where ``yolo predict`` pads a dynamic-size export or ``.pt`` weights only to the stride.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.vision.detections import Detections
from lineqa.vision.image import read_header
from tests.helpers.matching import MatchStats, assert_same_detections

adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="parity needs the train extra")
pytestmark = pytest.mark.slow

IMGSZ = 320
CONF = 0.01
IOU = 0.7
ASSETS = Path(__file__).resolve().parents[1] / "assets"
YOLO11N = ASSETS / "deeppcb-yolo11n-320.pt"  # tests/assets/make_deeppcb_model.py
YOLO26N = ASSETS / "parity-yolo26n-320.pt"  # tests/assets/make_parity_yolo26n.py


@dataclass(frozen=True)
class ParityModel:
    name: str
    weights: Path
    onnx: Path
    end_to_end: bool


@pytest.fixture(scope="module")
def parity_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ParityModel]:
    work = tmp_path_factory.mktemp("parity")
    models = {}
    for stem, asset in (("yolo11n", YOLO11N), ("yolo26n", YOLO26N)):
        weights = work / stem / asset.name
        weights.parent.mkdir()
        shutil.copyfile(asset, weights)  # Ultralytics writes its exports beside the weights
        if stem == "yolo26n":
            # Same weights, both heads: the NMS-free export, and the default export with the NMS head.
            nms_head = adapter.export_onnx(weights, IMGSZ)
            models["yolo26n-nms"] = ParityModel(
                "yolo26n-nms", weights, nms_head.rename(nms_head.with_name("nms.onnx")), False
            )
            models["yolo26n-e2e"] = ParityModel(
                "yolo26n-e2e", weights, adapter.export_onnx(weights, IMGSZ, end_to_end=True), True
            )
        else:
            # A fixed-size export beside the default dynamic one.
            fixed = adapter.export_onnx(weights, IMGSZ, dynamic=False)
            models["yolo11n-fixed"] = ParityModel(
                "yolo11n-fixed", weights, fixed.rename(fixed.with_name("fixed.onnx")), False
            )
            models[stem] = ParityModel(stem, weights, adapter.export_onnx(weights, IMGSZ), False)
    return models


@pytest.fixture(scope="module")
def parity_images(deeppcb_root: Path, neudet_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Seen and unseen DeepPCB boards (1- and 3-channel JPEGs), one NEU-DET image per class, and non-square
    crops of real boards (the letterbox then pads)."""
    boards = sorted(deeppcb_root.glob("group*/*/*_test.jpg"))
    three_channel = [p for p in boards if read_header(p.read_bytes()).channels == 3][:2]
    seen = [
        deeppcb_root / line.split()[0].replace(".jpg", "_test.jpg")
        for line in (deeppcb_root / "trainval.txt").read_text().splitlines()[:3]
    ]
    unseen = boards[500:503]
    steel = [
        neudet_root / "IMAGES" / f"{c}_7.jpg"
        for c in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    ]
    crops_dir = tmp_path_factory.mktemp("crops")
    board = cv2.imread(str(seen[0]))
    crops = [crops_dir / "wide.png", crops_dir / "tall.jpg"]
    cv2.imwrite(str(crops[0]), board[100:460, :])
    cv2.imwrite(str(crops[1]), board[:, 150:450])
    return [*seen, *unseen, *three_channel, *steel, *crops]


def lineqa_predict(model: Path, images: list[Path], out: Path) -> list[Detections]:
    """Run ``lineqa predict`` as a user would and read its JSON lines back."""
    cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(model), "--conf", str(CONF), "--iou", str(IOU)]
    result = subprocess.run([*cmd, "--output", str(out), *map(str, images)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    detections = []
    for line in out.read_text().splitlines():
        record = json.loads(line)
        rows = record["detections"]
        detections.append(
            Detections(
                np.array([r["box"] for r in rows], np.float32).reshape(-1, 4),
                np.array([r["confidence"] for r in rows], np.float32),
                np.array([r["class_id"] for r in rows], np.int64),
            )
        )
    return detections


# Every export against Ultralytics running the same ONNX file, and against the PyTorch weights it came from.
@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("yolo11n", "onnx"),
        ("yolo11n", "pt"),
        ("yolo11n-fixed", "onnx"),
        ("yolo11n-fixed", "pt"),
        ("yolo26n-e2e", "onnx"),
        ("yolo26n-e2e", "pt"),
        ("yolo26n-nms", "onnx"),
        ("yolo26n-nms", "pt"),
    ],
)
def test_lineqa_predict_matches_ultralytics_predict(
    name: str, reference: str, parity_models: dict[str, ParityModel], parity_images: list[Path], tmp_path: Path
) -> None:
    model = parity_models[name]
    ours = lineqa_predict(model.onnx, parity_images, tmp_path / "out.jsonl")
    source = model.onnx if reference == "onnx" else model.weights
    theirs = adapter.reference_predict(
        source, parity_images, imgsz=IMGSZ, conf=CONF, iou=IOU, end_to_end=model.end_to_end, rect=False
    )
    stats = MatchStats()
    for path, mine, ref in zip(parity_images, ours, theirs, strict=True):
        stats += assert_same_detections(mine, ref, conf=CONF, where=f"{name} vs {reference} on {path.name}")
        if reference == "onnx":  # same file, same runtime: not even near-threshold differences
            assert len(mine) == len(ref), f"{path.name}: {len(mine)} vs {len(ref)} detections"
    # The comparison means something only if the briefly trained model detects things.
    print(f"\nparity {name} vs Ultralytics {reference}: {stats}")
    assert stats.matched >= 20, f"only {stats.matched} detections matched: the model detected too little to compare"
