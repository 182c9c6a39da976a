"""Tiling finds the small defects a whole-image resize misses, on high-resolution images of real DeepPCB boards.

Each test image is a 1280 x 1280 mosaic of four held-out DeepPCB boards. The detector (committed, see
tests/assets/make_deeppcb_model.py) was trained at 320 px on whole 640 px boards, i.e. at half scale. Resizing
the whole mosaic to 320 px shrinks the ~35 px defects to ~9 px, a quarter scale the model never saw; 640 px
tiles bring them back to the trained scale. Recall is counted as in DeepPCB's protocol (IoU > 0.33 with a
same-class box).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.serving.onnx_model import OnnxModel
from lineqa.vision.decision import decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import detect
from lineqa.vision.nms import box_iou
from lineqa.vision.overlay import draw_decision
from lineqa.vision.recipe import ClassRule, ModelRef, Recipe
from lineqa.vision.tiling import TilingOptions, detect_tiled
from lineqa.vision.yolo_output import DecodeOptions
from tests.helpers.deeppcb import deeppcb_pairs, held_out, read_boxes

adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")
pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parent.parent / "assets" / "deeppcb-yolo11n-320.pt"
OPTIONS = DecodeOptions(conf_threshold=0.25)
TILING = TilingOptions(tile_px=640, overlap_ratio=0.2)


def mosaics(root: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` 2x2 mosaics of held-out boards with their (class, x1, y1, x2, y2) ground truth."""
    boards = [pair for k, pair in enumerate(deeppcb_pairs(root)) if held_out(k)]
    out = []
    for m in range(count):
        quad = boards[4 * m : 4 * m + 4]
        images = [cv2.imread(str(image)) for image, _ in quad]
        mosaic = np.vstack([np.hstack(images[:2]), np.hstack(images[2:])])
        truth = []
        for q, (_, annotation) in enumerate(quad):
            dx, dy = 640 * (q % 2), 640 * (q // 2)
            truth += [(c, x1 + dx, y1 + dy, x2 + dx, y2 + dy) for c, x1, y1, x2, y2 in read_boxes(annotation)]
        out.append((mosaic, np.array(truth)))
    return out


def found(truth: np.ndarray, detections: Detections) -> np.ndarray:
    if not len(detections):
        return np.zeros(len(truth), bool)
    iou = box_iou(truth[:, 1:], detections.xyxy)
    return ((iou > 0.33) & (truth[:, :1] == detections.class_id[None, :])).any(axis=1)


@pytest.fixture(scope="module")
def deeppcb_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    weights = tmp_path_factory.mktemp("deeppcb-model") / ASSET.name
    weights.write_bytes(ASSET.read_bytes())
    return OnnxModel(adapter.export_onnx(weights, 320))


def test_tiling_finds_small_defects_whole_image_resize_misses(
    deeppcb_model: OnnxModel, deeppcb_root: Path, artifacts_dir: Path
) -> None:
    spec = deeppcb_model.spec
    hits_whole = hits_tiled = total = 0
    for index, (mosaic, truth) in enumerate(mosaics(deeppcb_root, 10)):
        assert mosaic.shape == (1280, 1280, 3)
        whole = detect([mosaic], deeppcb_model.infer, spec, OPTIONS)[0]
        tiled = detect_tiled(mosaic, deeppcb_model.infer, spec, TILING, OPTIONS)
        hits_whole += int(found(truth, whole).sum())
        hits_tiled += int(found(truth, tiled).sum())
        total += len(truth)
        if index == 0:
            recipe = Recipe(id="deeppcb", model=ModelRef(name=spec.name), defaults=ClassRule(fail_confidence=0.25))
            panels = [draw_decision(mosaic, decide(d, spec.class_names, recipe)) for d in (whole, tiled)]
            cv2.imwrite(str(artifacts_dir / "tiling-whole-vs-tiled.png"), np.hstack(panels))
    recall_whole, recall_tiled = hits_whole / total, hits_tiled / total
    print(f"\nDeepPCB 1280px mosaics, {total} defects: recall whole-image {recall_whole:.3f}, tiled {recall_tiled:.3f}")
    assert total > 200
    assert recall_tiled >= 0.5, f"tiled recall {recall_tiled:.3f}"
    assert recall_tiled >= 3 * recall_whole, f"tiled {recall_tiled:.3f} vs whole {recall_whole:.3f}"


def test_tiling_changes_nothing_on_a_native_size_board(deeppcb_model: OnnxModel, deeppcb_root: Path) -> None:
    """A 640 px board is one window: tiled and plain detection agree (the full-image pass is merged in)."""
    image_path, _ = deeppcb_pairs(deeppcb_root)[0]
    board = cv2.imread(str(image_path))
    plain = detect([board], deeppcb_model.infer, deeppcb_model.spec, OPTIONS)[0]
    tiled = detect_tiled(board, deeppcb_model.infer, deeppcb_model.spec, TILING, OPTIONS)
    assert len(plain) > 0
    assert len(tiled) == len(plain)
    np.testing.assert_allclose(np.sort(tiled.confidence), np.sort(plain.confidence))
