"""The parity gate's comparison: what counts as the same detection, and what a refused model's report says."""

from __future__ import annotations

import numpy as np

from lineqa.training.parity import Tolerance, compare_detections, parity_report
from lineqa.vision.detections import Detections
from lineqa.vision.recipe import ClassRule, ModelRef, Recipe

CLASSES = ("open", "short")
RECIPE = Recipe(id="r", model=ModelRef(name="m"), defaults=ClassRule(fail_confidence=0.5, review_confidence=0.25))


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    array = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(np.int64))


def test_the_same_detections_match_within_tolerance() -> None:
    ours = dets((10, 10, 50, 50, 0.901, 0), (60, 60, 90, 90, 0.40, 1))
    theirs = dets((60, 60, 90, 90.1, 0.402, 1), (10, 10, 50, 50, 0.9, 0))
    stats = compare_detections(ours, theirs, conf=0.01, tolerance=Tolerance())
    assert stats.matched == 2 and not stats.differences and stats.min_iou > 0.99


def test_a_moved_box_a_changed_score_or_class_is_a_difference() -> None:
    reference = dets((10, 10, 50, 50, 0.9, 0))
    for exported in (dets((14, 10, 54, 50, 0.9, 0)), dets((10, 10, 50, 50, 0.8, 0)), dets((10, 10, 50, 50, 0.9, 1))):
        stats = compare_detections(exported, reference, conf=0.01, tolerance=Tolerance())
        assert stats.matched == 0
        assert len(stats.differences) == 2  # ours unmatched, and the reference's unmatched
        assert "no match in the reference" in stats.differences[0]


def test_a_detection_at_the_threshold_may_be_on_one_side_only() -> None:
    stats = compare_detections(dets((10, 10, 50, 50, 0.012, 0)), dets(), conf=0.01, tolerance=Tolerance())
    assert not stats.differences


def test_report_lists_verdict_changes_and_refuses_an_empty_comparison() -> None:
    # Scores differ by 0.004 (inside the tolerance) across the 0.5 FAIL threshold: same detections, other verdict.
    exported, reference = dets((10, 10, 50, 50, 0.502, 0)), dets((10, 10, 50, 50, 0.498, 0))
    report = parity_report(["a.jpg"], [exported], [reference], CLASSES, RECIPE, conf=0.01, tolerance=Tolerance())
    assert not report["passed"] and report["matched_detections"] == 1
    assert report["images"][0]["differences"] == ["verdict FAIL (exported) vs REVIEW (reference)"]
    empty = parity_report(["b.jpg"], [dets()], [dets()], CLASSES, RECIPE, conf=0.01, tolerance=Tolerance())
    assert not empty["passed"] and empty["differences"] == 0
    same = parity_report(["c.jpg"], [reference], [reference], CLASSES, RECIPE, conf=0.01, tolerance=Tolerance())
    assert same["passed"] and same["tolerance"] == {
        "min_iou": 0.99,
        "score_tol": 0.005,
        "nms_band": 0.002,
        "conf": 0.01,
        "nms_iou": None,
    }


def test_a_box_at_the_nms_threshold_may_be_kept_on_one_side_only() -> None:
    # The second box overlaps the first by IoU 0.7 exactly: NMS at 0.7 may keep or drop it (float rounding).
    kept = dets((0, 0, 100, 100, 0.9, 0), (0, 0, 100, 70, 0.3, 0))
    dropped = dets((0, 0, 100, 100, 0.9, 0))
    tie = compare_detections(dropped, kept, conf=0.01, tolerance=Tolerance(), nms_iou=0.7)
    assert not tie.differences and tie.nms_ties == 1 and tie.matched == 1
    assert compare_detections(dropped, kept, conf=0.01, tolerance=Tolerance(), nms_iou=0.5).differences
    assert compare_detections(dropped, kept, conf=0.01, tolerance=Tolerance()).differences


def test_a_box_that_a_tie_suppressed_on_the_other_side_only_is_no_difference() -> None:
    # NMS is a chain: the middle box ties with the top one (IoU 0.7); kept on one side, it suppresses the lowest
    # box there (IoU 0.97), while on the side that dropped it the lowest box (IoU 0.68 with the top) survives.
    top, tie, freed = (0, 0, 100, 100, 0.9, 0), (0, 0, 100, 70, 0.3, 0), (0, 0, 100, 68, 0.2, 0)
    chain = compare_detections(dets(top, freed), dets(top, tie), conf=0.01, tolerance=Tolerance(), nms_iou=0.7)
    assert not chain.differences and chain.nms_ties == 2 and chain.matched == 1
    reverse = compare_detections(dets(top, tie), dets(top, freed), conf=0.01, tolerance=Tolerance(), nms_iou=0.7)
    assert not reverse.differences and reverse.nms_ties == 2
    # Without a tie above it, or of another class than the tie, a box on one side only is a difference.
    no_tie = (0, 0, 100, 60, 0.3, 0)
    assert compare_detections(
        dets(top, freed), dets(top, no_tie), conf=0.01, tolerance=Tolerance(), nms_iou=0.7
    ).differences
    other_class = (0, 0, 100, 68, 0.2, 1)
    other = compare_detections(dets(top, other_class), dets(top, tie), conf=0.01, tolerance=Tolerance(), nms_iou=0.7)
    assert other.differences == [
        "exported detection class 1 score 0.2000 box [0.0, 0.0, 100.0, 68.0] has no match in the reference"
    ]
