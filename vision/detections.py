"""The one detections type everything downstream shares: decoder, tiling, recipes, serving, evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Detections:
    """N detected boxes in one image's pixel coordinates.

    ``xyxy`` is (N, 4) float32 (x1, y1, x2, y2), ``confidence`` (N,) float32 in [0, 1], ``class_id`` (N,)
    int64. Shapes, dtypes and values are checked on construction, with "expected … got …" messages; the
    arrays are read-only, so a ``Detections`` can be shared freely.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id)
        if (
            class_id.size
            and not np.issubdtype(class_id.dtype, np.integer)
            and not np.all(np.equal(np.mod(class_id, 1), 0))
        ):
            raise ValueError(f"expected integer class ids, got {class_id.dtype} values {class_id[:5]}")
        class_id = class_id.astype(np.int64).reshape(-1)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"expected xyxy of shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        if confidence.shape != (n,):
            raise ValueError(f"expected confidence of shape ({n},), got {confidence.shape}")
        if class_id.shape != (n,):
            raise ValueError(f"expected class_id of shape ({n},), got {class_id.shape}")
        if not (np.isfinite(xyxy).all() and np.isfinite(confidence).all()):
            raise ValueError("expected finite boxes and confidences, got NaN or infinity")
        if n and ((xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any()):
            raise ValueError("expected x2 >= x1 and y2 >= y1 for every box, got an inverted box")
        if n and (class_id.min() < 0):
            raise ValueError(f"expected class ids >= 0, got {class_id.min()}")
        object.__setattr__(self, "xyxy", _frozen(xyxy))
        object.__setattr__(self, "confidence", _frozen(confidence))
        object.__setattr__(self, "class_id", _frozen(class_id))

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: np.ndarray | slice | Sequence[int]) -> Detections:
        """Select by boolean mask, integer indices or slice."""
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    @property
    def area_px(self) -> np.ndarray:
        """Box areas in square pixels, float64."""
        wh = self.xyxy[:, 2:].astype(np.float64) - self.xyxy[:, :2]
        return np.asarray(wh[:, 0] * wh[:, 1])

    @property
    def centers(self) -> np.ndarray:
        """Box centres, (N, 2) float64."""
        return np.asarray((self.xyxy[:, :2].astype(np.float64) + self.xyxy[:, 2:]) / 2)

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same boxes moved by (dx, dy) pixels: tile coordinates to image coordinates."""
        offset = np.array([dx, dy, dx, dy], dtype=np.float32)
        return Detections(self.xyxy + offset, self.confidence, self.class_id)

    def sorted_by_confidence(self) -> Detections:
        return self[np.argsort(-self.confidence, kind="stable")]
