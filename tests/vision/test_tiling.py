"""Tile planning and cross-tile merging (the real-model tiling test is in test_tiling_real.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lineqa.vision.detections import Detections
from lineqa.vision.tiling import TilingOptions, merge_tiles, tile_windows


@pytest.mark.parametrize(
    ("image_hw", "tile", "overlap", "count"),
    [((640, 640), 640, 0.2, 1), ((1280, 1280), 640, 0.2, 9), ((1000, 3000), 640, 0.25, 12), ((300, 200), 640, 0.2, 1)],
)
def test_windows_cover_the_image_with_overlap(image_hw: tuple[int, int], tile: int, overlap: float, count: int) -> None:
    windows = tile_windows(image_hw, TilingOptions(tile, overlap))
    assert len(windows) == count
    covered = np.zeros(image_hw, bool)
    for x0, y0, x1, y1 in windows:
        assert x1 - x0 == min(tile, image_hw[1]) and y1 - y0 == min(tile, image_hw[0])  # full tiles only
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({int(w[0]) for w in windows})
    if len(xs) > 1:  # neighbours overlap by at least the requested share
        assert min(b - a for a, b in itertools.pairwise(xs)) <= tile * (1 - overlap)


def test_defect_cut_by_a_window_edge_is_reported_once_whole() -> None:
    windows = np.array([[0, 0, 640, 640], [512, 0, 1152, 640]])
    # A defect spanning x 600..680: window 0 sees its left part, window 1 sees it whole.
    left = Detections(np.array([[600, 100, 640, 130]]), np.array([0.7]), np.array([2]))
    whole = Detections(np.array([[88, 100, 168, 130]]), np.array([0.9]), np.array([2]))
    merged = merge_tiles([left, whole], windows, 0.5)
    assert len(merged) == 1
    assert merged.xyxy[0].tolist() == [600, 100, 680, 130]
    assert merged.confidence[0] == pytest.approx(0.9)


def test_full_image_pass_is_merged_too() -> None:
    windows = np.array([[0, 0, 640, 640]])
    tile = Detections(np.array([[10, 10, 50, 50]]), np.array([0.8]), np.array([0]))
    full = Detections(np.array([[12, 11, 49, 50], [500, 500, 900, 900]]), np.array([0.6, 0.95]), np.array([0, 1]))
    merged = merge_tiles([tile], windows, 0.5, full)
    assert sorted(merged.class_id.tolist()) == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile_px": 16}, "tile_px"),
        ({"tile_px": 640, "overlap_ratio": 1.0}, "overlap_ratio"),
        ({"tile_px": 640, "merge_threshold": 0}, "merge_threshold"),
    ],
)
def test_bad_tiling_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TilingOptions(**kwargs)  # type: ignore[arg-type]
