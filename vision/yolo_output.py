"""Decode raw YOLO detection outputs into :class:`~lineqa.vision.detections.Detections`.

Two heads exist in the wild and both are served:

* ``NMS`` (YOLOv8 / YOLO11 / YOLO26 exported with ``nms=None``): (batch, 4 + classes, anchors) with
  centre-xywh boxes and per-class sigmoid scores; needs confidence filtering and per-class NMS.
* ``END_TO_END`` (YOLO26's NMS-free head, also YOLOv10): (batch, max_det, 6) rows of
  x1, y1, x2, y2, score, class, already ranked; only filtered.

The filtering and ordering rules are Ultralytics' ``non_max_suppression`` ones (strict ``>`` on the
confidence threshold, best class only, at most ``max_nms`` boxes into NMS, at most ``max_det`` out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from lineqa.vision.detections import Detections
from lineqa.vision.errors import ModelOutputError
from lineqa.vision.nms import nms


class HeadKind(str, Enum):
    NMS = "nms"
    END_TO_END = "end2end"


@dataclass(frozen=True)
class DecodeOptions:
    """Post-processing knobs, named and defaulted as in ``yolo predict`` (conf 0.25, iou 0.7, max_det 300)."""

    conf_threshold: float = 0.25
    iou_threshold: float = 0.7
    max_det: int = 300
    max_nms: int = 30000
    classes: tuple[int, ...] | None = None
    agnostic: bool = False

    def __post_init__(self) -> None:
        for name in ("conf_threshold", "iou_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.max_det < 1 or self.max_nms < 1:
            raise ValueError(f"max_det and max_nms must be positive, got {self.max_det}, {self.max_nms}")


def infer_head_kind(output_shape: Sequence[int | str | None], num_classes: int) -> HeadKind:
    """Tell the head from an output shape (symbolic dimensions allowed) and the number of classes."""
    if len(output_shape) != 3:
        raise ModelOutputError(f"expected a 3-D detection output, got shape {tuple(output_shape)}")
    _, second, third = output_shape
    if third == 6 and second != 4 + num_classes:
        return HeadKind.END_TO_END
    if second == 4 + num_classes:
        return HeadKind.NMS
    raise ModelOutputError(
        f"output shape {tuple(output_shape)} fits neither a YOLO NMS head (batch, {4 + num_classes}, anchors) "
        f"for {num_classes} classes nor an end-to-end head (batch, max_det, 6)"
    )


def _check_output(raw: np.ndarray, kind: HeadKind, num_classes: int) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 3:
        raise ModelOutputError(f"expected a (batch, ·, ·) output, got shape {raw.shape}")
    if kind is HeadKind.NMS and raw.shape[1] != 4 + num_classes:
        raise ModelOutputError(
            f"expected an NMS-head output of shape (batch, {4 + num_classes}, anchors), got {raw.shape}"
        )
    if kind is HeadKind.END_TO_END and raw.shape[2] != 6:
        raise ModelOutputError(f"expected an end-to-end output of shape (batch, max_det, 6), got {raw.shape}")
    if not np.isfinite(raw).all():
        raise ModelOutputError("model output contains NaN or infinite values")
    return raw.astype(np.float32, copy=False)


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2
    return np.concatenate((xywh[:, :2] - half, xywh[:, :2] + half), axis=1)


def _decode_nms_head(pred: np.ndarray, num_classes: int, options: DecodeOptions) -> Detections:
    rows = pred.T  # (anchors, 4 + classes)
    scores = rows[:, 4 : 4 + num_classes]
    class_id = scores.argmax(axis=1)
    confidence = scores[np.arange(len(rows)), class_id]
    keep = confidence > options.conf_threshold
    if options.classes is not None:
        keep &= np.isin(class_id, options.classes)
    rows, confidence, class_id = rows[keep], confidence[keep], class_id[keep]
    if len(rows) > options.max_nms:
        top = np.argsort(-confidence, kind="stable")[: options.max_nms]
        rows, confidence, class_id = rows[top], confidence[top], class_id[top]
    xyxy = _xywh_to_xyxy(rows[:, :4])
    kept = nms(
        xyxy, confidence, options.iou_threshold, None if options.agnostic else class_id, max_keep=options.max_det
    )
    return Detections(xyxy[kept], confidence[kept], class_id[kept])


def _decode_end_to_end(pred: np.ndarray, num_classes: int, options: DecodeOptions) -> Detections:
    class_id = pred[:, 5]
    keep = pred[:, 4] > options.conf_threshold
    if options.classes is not None:
        keep &= np.isin(class_id, options.classes)
    rows = pred[keep][: options.max_det]
    if len(rows) and (rows[:, 5].max() >= num_classes or rows[:, 5].min() < 0):
        raise ModelOutputError(f"end-to-end output names class {rows[:, 5].max():.0f} of {num_classes}")
    # Boxes with x2 < x1 come from an untrained or broken model; keep them valid rather than crash downstream.
    xyxy = np.concatenate((np.minimum(rows[:, :2], rows[:, 2:4]), np.maximum(rows[:, :2], rows[:, 2:4])), axis=1)
    return Detections(xyxy, rows[:, 4], rows[:, 5])


def decode_outputs(
    raw: np.ndarray, kind: HeadKind, num_classes: int, options: DecodeOptions = DecodeOptions()
) -> list[Detections]:
    """Decode a batch of raw outputs into one :class:`Detections` per image, in model-input pixels."""
    raw = _check_output(raw, kind, num_classes)
    decode = _decode_nms_head if kind is HeadKind.NMS else _decode_end_to_end
    return [decode(pred, num_classes, options) for pred in raw]
