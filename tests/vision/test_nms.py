"""NMS must keep exactly what torchvision keeps (what Ultralytics calls), per class and across classes."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.nms import OverlapMetric, box_iou, merge_overlapping, nms

torch = pytest.importorskip("torch")
tv_ops = pytest.importorskip("torchvision.ops")


def random_boxes(rng: np.random.Generator, n: int, extent: float = 300.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(2, 80, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_equals_torchvision(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, 400)
    scores = rng.uniform(0, 1, 400).astype(np.float32)
    ours = nms(boxes, scores, threshold)
    theirs = tv_ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("seed", range(6))
def test_per_class_nms_equals_batched_nms(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    boxes = random_boxes(rng, 300)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    classes = rng.integers(0, 5, 300)
    ours = nms(boxes, scores, 0.5, classes)
    theirs = tv_ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5
    ).numpy()
    np.testing.assert_array_equal(ours, theirs)


def test_classes_stay_apart_on_huge_images() -> None:
    """Two identical boxes of different classes far past 7680 px must both survive per-class NMS."""
    boxes = np.array([[20000, 20000, 20050, 20050], [20000, 20000, 20050, 20050]], np.float32)
    assert sorted(nms(boxes, np.array([0.9, 0.8]), 0.5, np.array([0, 1])).tolist()) == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.5, np.array([0, 0])).tolist() == [0]


def test_box_iou_matches_torchvision() -> None:
    rng = np.random.default_rng(5)
    a, b = random_boxes(rng, 30), random_boxes(rng, 40)
    expected = tv_ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), expected, atol=1e-6)


def test_merge_absorbs_a_box_cut_at_a_tile_edge() -> None:
    whole = [100, 100, 140, 130]
    cut = [100, 100, 118, 130]  # the same defect seen by a window ending at x=118
    other = [300, 300, 320, 320]
    boxes = np.array([cut, whole, other], np.float32)
    keep, merged = merge_overlapping(boxes, np.array([0.9, 0.8, 0.7]), np.array([1, 1, 1]), 0.5)
    assert keep.tolist() == [0, 2]  # the higher score survives ...
    np.testing.assert_array_equal(merged[0], whole)  # ... with the whole extent
    # IoU alone would keep both (IoU 0.45 < 0.5): intersection-over-smaller is what catches the cut.
    assert nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist() == [0, 1, 2]
    keep, _ = merge_overlapping(boxes, np.array([0.9, 0.8, 0.7]), np.array([1, 2, 1]), 0.5)
    assert keep.tolist() == [0, 1, 2]  # other classes are never merged
    keep, _ = merge_overlapping(boxes, np.array([0.9, 0.8, 0.7]), np.array([1, 1, 1]), 0.5, metric=OverlapMetric.IOU)
    assert keep.tolist() == [0, 1, 2]


def test_empty_inputs() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    keep, merged = merge_overlapping(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5)
    assert keep.shape == (0,) and merged.shape == (0, 4)


@pytest.mark.parametrize("max_keep", [1, 5, 50, 10_000])
def test_stopping_at_max_keep_is_a_prefix_of_the_full_result(max_keep: int) -> None:
    rng = np.random.default_rng(77)
    boxes, scores = random_boxes(rng, 500), rng.uniform(0, 1, 500)
    classes = rng.integers(0, 3, 500)
    full = nms(boxes, scores, 0.5, classes)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, classes, max_keep=max_keep), full[:max_keep])
