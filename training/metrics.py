"""Detection metrics as COCO defines them, in numpy: AP at IoU 0.50:0.05:0.95, 101-point interpolation.

These are the figures ``lineqa evaluate`` reports and the promotion gate compares; :mod:`lineqa.training.coco_check`
recomputes them with pycocotools on the same predictions, so a slip here cannot go unnoticed. Matching
follows COCO: detections of one class in one image are taken by descending score, each matches the unmatched
ground-truth box of that class with the highest IoU at or above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lineqa.vision.nms import box_iou

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageBoxes:
    """One image's truth and predictions. Class ids index the evaluation's class list; a prediction of a
    class the dataset does not have carries -1 and counts for no class's AP."""

    truth_xyxy: np.ndarray  # (G, 4)
    truth_class: np.ndarray  # (G,)
    pred_xyxy: np.ndarray  # (D, 4)
    pred_conf: np.ndarray  # (D,)
    pred_class: np.ndarray  # (D,)


@dataclass(frozen=True)
class ClassCurve:
    """Precision against recall at IoU 0.5 for one class, and its AP at each IoU threshold."""

    recall: np.ndarray
    precision: np.ndarray
    ap: np.ndarray  # (10,) one AP per IoU threshold; NaN when the class has no ground truth
    truth_count: int


def _match(image: ImageBoxes, class_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, true-positive flags per IoU threshold (D, 10), ground-truth count) for one class in one image."""
    truth = image.truth_xyxy[image.truth_class == class_id]
    keep = image.pred_class == class_id
    order = np.argsort(-image.pred_conf[keep], kind="mergesort")
    preds, scores = image.pred_xyxy[keep][order], image.pred_conf[keep][order]
    hits = np.zeros((len(preds), len(IOU_THRESHOLDS)), dtype=bool)
    if len(preds) and len(truth):
        iou = box_iou(preds, truth)
        for t, threshold in enumerate(IOU_THRESHOLDS):
            taken = np.zeros(len(truth), dtype=bool)
            for d in range(len(preds)):
                candidates = np.where(taken, -1.0, iou[d])
                best = int(np.argmax(candidates))
                if candidates[best] >= threshold - 1e-10:
                    taken[best] = True
                    hits[d, t] = True
    return scores, hits, len(truth)


def _average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP: precision made monotone, sampled at recall 0, 0.01, ... 1."""
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    indices = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.array([envelope[i] if i < len(envelope) else 0.0 for i in indices])
    return float(sampled.mean())


def class_curves(images: list[ImageBoxes], num_classes: int) -> list[ClassCurve]:
    """Per class: the PR curve at IoU 0.5 and AP at the ten COCO IoU thresholds."""
    curves = []
    for class_id in range(num_classes):
        parts = [_match(image, class_id) for image in images]
        truth_count = sum(count for _, _, count in parts)
        scores = np.concatenate([s for s, _, _ in parts]) if parts else np.zeros(0)
        hits = np.concatenate([h for _, h, _ in parts]) if parts else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        order = np.argsort(-scores, kind="mergesort")
        hits = hits[order]
        if truth_count == 0:
            nan = np.full(len(IOU_THRESHOLDS), np.nan)
            curves.append(ClassCurve(np.zeros(0), np.zeros(0), nan, 0))
            continue
        tp = np.cumsum(hits, axis=0)
        fp = np.cumsum(~hits, axis=0)
        recall = tp / truth_count
        precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
        ap = np.array([_average_precision(recall[:, t], precision[:, t]) for t in range(len(IOU_THRESHOLDS))])
        curves.append(ClassCurve(recall[:, 0], precision[:, 0], ap, truth_count))
    return curves


def mean_ap(curves: list[ClassCurve]) -> tuple[float, float]:
    """(mAP50, mAP50-95) over the classes that have ground truth."""
    aps = np.array([c.ap for c in curves if c.truth_count > 0])
    if not len(aps):
        return float("nan"), float("nan")
    return float(aps[:, 0].mean()), float(aps.mean())


def confusion_matrix(
    images: list[ImageBoxes], num_classes: int, *, conf: float = 0.25, iou: float = 0.45
) -> np.ndarray:
    """Counts (predicted class + background row) × (true class + background column), as Ultralytics draws it.

    Predictions at ``conf`` or above are paired with truth boxes by descending IoU above ``iou``, regardless of
    class (a pair of different classes is a confusion); the unpaired are missed defects or false alarms.
    Predictions of classes the dataset does not have (id -1) are left out; the evaluation counts them apart.
    """
    background = num_classes
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    for image in images:
        keep = (image.pred_conf >= conf) & (image.pred_class >= 0)
        preds, pred_class = image.pred_xyxy[keep], image.pred_class[keep]
        truth, truth_class = image.truth_xyxy, image.truth_class
        paired_pred, paired_truth = set(), set()
        if len(preds) and len(truth):
            overlap = box_iou(preds, truth)
            for flat in np.argsort(-overlap, axis=None, kind="stable"):
                p, g = np.unravel_index(flat, overlap.shape)
                if overlap[p, g] <= iou:
                    break
                if p in paired_pred or g in paired_truth:
                    continue
                paired_pred.add(p)
                paired_truth.add(g)
                matrix[pred_class[p], truth_class[g]] += 1
        for g in range(len(truth)):
            if g not in paired_truth:
                matrix[background, truth_class[g]] += 1
        for p in range(len(preds)):
            if p not in paired_pred:
                matrix[pred_class[p], background] += 1
    return matrix
