"""The COCO metrics against pycocotools (the reference implementation), on predictions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.training.coco_check import coco_map
from lineqa.training.metrics import ImageBoxes, class_curves, confusion_matrix, mean_ap

pytest.importorskip("pycocotools", reason="the cross-check needs pycocotools (train extra)")


def _random_images(seed: int, count: int = 40, classes: int = 3) -> list[ImageBoxes]:
    """Truth boxes, predictions that are jittered copies (some missed, some wrong class) plus false alarms."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(8, 120, (n, 2))
        truth = np.concatenate([xy, xy + wh], axis=1)
        truth_class = rng.integers(0, classes, n)
        keep = rng.random(n) > 0.2
        jitter = rng.normal(0, rng.uniform(0.5, 12), (int(keep.sum()), 4))
        pred = truth[keep] + jitter
        pred_class = np.where(
            rng.random(int(keep.sum())) < 0.1, rng.integers(0, classes, int(keep.sum())), truth_class[keep]
        )
        m = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 500, (m, 2))
        false = np.concatenate([fxy, fxy + rng.uniform(8, 80, (m, 2))], axis=1)
        pred = np.concatenate([pred, false]).reshape(-1, 4)
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        pred_class = np.concatenate([pred_class, rng.integers(-1, classes, m)]).astype(np.int64)
        conf = rng.uniform(0.01, 1.0, len(pred))
        images.append(ImageBoxes(truth, truth_class.astype(np.int64), pred, conf, pred_class))
    return images


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_map_equals_pycocotools(seed: int) -> None:
    images = _random_images(seed)
    ours = mean_ap(class_curves(images, 3))
    theirs = coco_map(images, [(640, 640)] * len(images), 3)
    assert 0.05 < ours[1] < ours[0] < 1.0  # a non-trivial case, not all-or-nothing
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_perfect_predictions_score_one_and_empty_classes_do_not_count() -> None:
    truth = np.array([[10, 10, 50, 50], [100, 100, 140, 160]], dtype=float)
    image = ImageBoxes(truth, np.array([0, 2]), truth.copy(), np.array([0.9, 0.8]), np.array([0, 2]))
    curves = class_curves([image], 3)
    assert curves[1].truth_count == 0 and np.isnan(curves[1].ap).all()
    assert mean_ap(curves) == (1.0, 1.0)
    assert coco_map([image], [(200, 200)], 3) == pytest.approx((1.0, 1.0))


def test_a_false_alarm_ranked_first_costs_precision() -> None:
    truth = np.array([[10, 10, 50, 50]], dtype=float)
    preds = np.array([[300, 300, 340, 340], [10, 10, 50, 50]], dtype=float)
    image = ImageBoxes(truth, np.array([0]), preds, np.array([0.9, 0.5]), np.array([0, 0]))
    map50, _ = mean_ap(class_curves([image], 1))
    assert map50 == pytest.approx(0.5)  # recall 1 reached at precision 1/2


def test_confusion_matrix_counts_confusions_misses_and_false_alarms() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], dtype=float)
    preds = np.array([[0, 0, 10, 10], [20, 20, 30, 31], [80, 80, 90, 90], [50, 50, 60, 60]], dtype=float)
    image = ImageBoxes(truth, np.array([0, 1, 1]), preds, np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 0, 1, 1]))
    matrix = confusion_matrix([image], 2, conf=0.25)
    assert matrix.tolist() == [
        [1, 1, 0],  # predicted 0: a true 0, a true 1 (confused)
        [0, 0, 1],  # predicted 1: a false alarm on background
        [0, 1, 0],  # background: the third box was missed (its prediction is below conf)
    ]
