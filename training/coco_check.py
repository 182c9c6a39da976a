"""An independent check of :mod:`lineqa.training.metrics`: pycocotools' COCOeval on the same predictions.

pycocotools is the reference implementation of COCO's AP; if our figure and its figure disagree beyond
rounding, the evaluation says so instead of reporting a number nobody can trust.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from lineqa.training.errors import TrainingError
from lineqa.training.metrics import ImageBoxes

MAX_DETECTIONS = 300  # as the evaluation keeps per image (COCO's default is 100)


def _xywh(xyxy: np.ndarray) -> list[list[float]]:
    return [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in xyxy]


def coco_map(images: list[ImageBoxes], sizes: list[tuple[int, int]], num_classes: int) -> tuple[float, float]:
    """(mAP50, mAP50-95) by pycocotools over the classes that have ground truth."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise TrainingError("the COCO cross-check needs pycocotools (pip install 'lineqa[train]')") from exc
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image_id, image in enumerate(images, 1):
        for box, cls in zip(_xywh(image.truth_xyxy), image.truth_class, strict=True):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(cls) + 1, "bbox": box,
                 "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
        keep = image.pred_class >= 0
        for box, conf, cls in zip(
            _xywh(image.pred_xyxy[keep]), image.pred_conf[keep], image.pred_class[keep], strict=True
        ):
            detections.append({"image_id": image_id, "category_id": int(cls) + 1, "bbox": box, "score": float(conf)})
    truth = COCO()
    truth.dataset = {
        "images": [{"id": i, "width": w, "height": h} for i, (w, h) in enumerate(sizes, 1)],
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth.createIndex()
        predicted = truth.loadRes(detections) if detections else None
        if predicted is None:
            return 0.0, 0.0
        evaluator = COCOeval(truth, predicted, "bbox")
        evaluator.params.maxDets = [1, 10, MAX_DETECTIONS]
        evaluator.params.catIds = sorted({a["category_id"] for a in annotations})
        evaluator.evaluate()
        evaluator.accumulate()
    # precision[iou, recall, class, area range, max detections]; summarize() would read maxDets=100 only.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    return _mean_valid(precision[0]), _mean_valid(precision)


def _mean_valid(values: np.ndarray) -> float:
    """Mean over entries COCOeval filled in (-1 marks a class without ground truth)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")
