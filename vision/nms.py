"""Box overlap and non-maximum suppression in numpy, with torchvision's semantics.

Greedy NMS keeps the highest-scoring box and drops every remaining box whose IoU with it is *greater* than
the threshold, as ``torchvision.ops.nms`` (what Ultralytics calls) does. Each step is one vectorised
comparison of the kept box against all remaining boxes; classes are separated by offsetting boxes so that one
pass handles them all. The offset is larger than any coordinate, so tiled images of any size stay correct
(Ultralytics' fixed 7680 px offset would let classes overlap past 7680 px).
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class OverlapMetric(str, Enum):
    IOU = "iou"  # intersection over union: duplicates of the same object
    IOS = "ios"  # intersection over the smaller box: a box cut at a tile edge inside the whole box


def _overlap_one_to_many(box: np.ndarray, boxes: np.ndarray, metric: OverlapMetric) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    denom = area + areas - inter if metric is OverlapMetric.IOU else np.minimum(area, areas)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / denom, 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes: an (N, M) float64 matrix."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou: np.ndarray = np.where(union > 0, inter / union, 0.0)
    return iou


def _class_offsets(xyxy: np.ndarray, class_id: np.ndarray) -> np.ndarray:
    span = float(np.abs(xyxy).max()) + 1.0 if xyxy.size else 1.0
    shifted: np.ndarray = xyxy + (class_id.astype(np.float64) * span * 2)[:, None]
    return shifted


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_id: np.ndarray | None = None,
    *,
    metric: OverlapMetric = OverlapMetric.IOU,
    max_keep: int | None = None,
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    With ``class_id`` given, boxes of different classes never suppress each other (per-class NMS). Greedy NMS
    decides boxes in score order and a kept box never depends on later ones, so stopping at ``max_keep`` gives
    exactly the first ``max_keep`` of the full result, and bounds the work on a flood of candidates.
    """
    boxes = np.asarray(xyxy, dtype=np.float64)
    if class_id is not None:
        boxes = _class_offsets(boxes, np.asarray(class_id))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if not rest.size or len(keep) == max_keep:
            break
        overlap = _overlap_one_to_many(boxes[best], boxes[rest], metric)
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def merge_overlapping(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray,
    threshold: float,
    *,
    metric: OverlapMetric = OverlapMetric.IOS,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum *merging* (SAHI's default for tiles) of same-class boxes.

    The highest-scoring box absorbs every same-class box overlapping it by more than ``threshold``: its box
    becomes the union of theirs, its score stays the highest. Returns (kept indices, merged (K, 4) boxes).
    """
    boxes = np.asarray(xyxy, dtype=np.float64)
    shifted = _class_offsets(boxes, np.asarray(class_id))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    merged: list[np.ndarray] = []
    while order.size:
        best = int(order[0])
        rest = order[1:]
        overlap = _overlap_one_to_many(shifted[best], shifted[rest], metric)
        absorbed = rest[overlap > threshold]
        group = boxes[np.concatenate(([best], absorbed))]
        keep.append(best)
        merged.append(np.concatenate((group[:, :2].min(axis=0), group[:, 2:].max(axis=0))))
        order = rest[overlap <= threshold]
    if not keep:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float64)
    return np.asarray(keep, dtype=np.int64), np.stack(merged)
