"""The shared detections type validates on construction with "expected … got …" messages."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.detections import Detections

GOOD = (np.array([[0, 0, 10, 10], [5, 5, 20, 30]]), np.array([0.9, 0.5]), np.array([1, 0]))


@pytest.mark.parametrize(
    ("xyxy", "confidence", "class_id", "message"),
    [
        (np.zeros((2, 3)), np.zeros(2), np.zeros(2, int), r"expected xyxy of shape \(N, 4\), got \(2, 3\)"),
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2, int), r"expected confidence of shape \(2,\), got \(3,\)"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros(1, int), r"expected class_id of shape \(2,\), got \(1,\)"),
        (np.array([[0, 0, np.nan, 1]]), np.zeros(1), np.zeros(1, int), "finite"),
        (np.array([[10, 0, 5, 1]]), np.zeros(1), np.zeros(1, int), "x2 >= x1"),
        (np.zeros((1, 4)), np.zeros(1), np.array([0.5]), "integer class ids"),
        (np.zeros((1, 4)), np.zeros(1), np.array([-1]), "class ids >= 0"),
    ],
)
def test_invalid_construction(xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detections(xyxy, confidence, class_id)


def test_normalises_dtypes_and_freezes() -> None:
    d = Detections(*GOOD)
    assert d.xyxy.dtype == np.float32 and d.confidence.dtype == np.float32 and d.class_id.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        d.xyxy[0, 0] = 3


def test_select_concat_shift_and_areas() -> None:
    d = Detections(*GOOD)
    assert len(d) == 2 and len(Detections.empty()) == 0
    assert d[np.array([False, True])].class_id.tolist() == [0]
    assert d.area_px.tolist() == [100.0, 375.0]
    both = Detections.concat([d, d.shifted(100, 50)])
    assert len(both) == 4 and both.xyxy[2].tolist() == [100, 50, 110, 60]
    assert d.sorted_by_confidence().confidence.tolist() == pytest.approx([0.9, 0.5])
    assert len(Detections.concat([])) == 0
    assert Detections(np.array([]), np.array([]), np.array([])).xyxy.shape == (0, 4)
