"""The golden-sample step on top of the detector's verdict: it can only add doubt, never take a FAIL away.

Synthetic boards with a defect drawn at a known place (tests/helpers/boards.py); detections are given, so what
the comparison must add is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.decision import NO_DEFECT, Decision, Disposition, Verdict, decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import ModelSpec
from lineqa.vision.errors import RecipeError
from lineqa.vision.golden import ANOMALY_CLASS, comparison, judge_against_reference, settle
from lineqa.vision.perturb import rephotograph
from lineqa.vision.recipe import Recipe, parse_recipe
from lineqa.vision.yolo_output import HeadKind
from tests.helpers.boards import DEFECT, SIZE, board, overlaps, with_defect

CLASSES = ("spur", "short")
IMAGE_MODEL = ModelSpec("m", (SIZE, SIZE), CLASSES, HeadKind.NMS)
GOLDEN = "ab" * 32


def recipe(extra: str = "") -> Recipe:
    reference = f"reference: {{image: {GOLDEN}{extra}}}\n"
    return parse_recipe(
        "id: board\nmodel: {name: m}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.3}\n" + reference
    )


def detections(*found: tuple[tuple[float, float, float, float], float]) -> Detections:
    return Detections(
        np.array([box for box, _ in found], np.float32).reshape(-1, 4),
        np.array([conf for _, conf in found], np.float32),
        np.zeros(len(found), np.int64),
    )


def judged(frame: np.ndarray, reference: np.ndarray, found: Detections, rules: Recipe) -> tuple[Decision, Decision]:
    """(the detector's decision, the decision once the golden sample had its say)."""
    assert rules.reference is not None
    before = decide(found, CLASSES, rules)
    return before, settle(before, rules, comparison(frame, reference, rules, IMAGE_MODEL))


def anomalies(decision: Decision) -> list[tuple[float, float, float, float]]:
    return [j.xyxy for j in decision.flagged if j.class_name == ANOMALY_CLASS]


@pytest.mark.parametrize("seed", range(3))
def test_a_good_part_keeps_its_verdict(seed: int) -> None:
    golden = board()
    before, after = judged(rephotograph(golden, np.random.default_rng(seed)), golden, detections(), recipe())
    assert before.verdict is Verdict.PASS
    assert after == before


def test_a_defect_no_detection_explains_is_review_with_an_anomaly_over_it() -> None:
    golden = board()
    frame = rephotograph(with_defect(golden), np.random.default_rng(1))
    before, after = judged(frame, golden, detections(), recipe())
    assert before.verdict is Verdict.PASS
    assert after.verdict is Verdict.REVIEW
    assert after.reasons == ("1 anomaly region no detection explains",)
    assert NO_DEFECT not in after.reasons
    [box] = anomalies(after)
    assert overlaps(box, DEFECT)
    [finding] = [j for j in after.judged if j.class_name == ANOMALY_CLASS]
    assert finding.disposition is Disposition.ANOMALY and 0 < finding.confidence <= 1


def test_a_detection_over_the_defect_explains_it() -> None:
    golden = board()
    x1, y1, x2, y2 = DEFECT
    found = detections(((x1 - 6, y1 - 6, x2 + 6, y2 + 6), 0.4))  # in the review band: flagged, explains it
    before, after = judged(with_defect(golden), golden, found, recipe())
    assert before.verdict is Verdict.REVIEW
    assert after == before


def test_an_anomaly_in_an_ignored_area_is_seen_but_not_counted() -> None:
    golden = board()
    x1, y1, x2, y2 = (v + d for v, d in zip(DEFECT, (-20, -20, 20, 20), strict=True))
    rules = parse_recipe(
        f"id: board\nmodel: {{name: m}}\nreference: {{image: {GOLDEN}}}\n"
        f"ignore: [{{name: label, polygon: [[{x1}, {y1}], [{x2}, {y1}], [{x2}, {y2}], [{x1}, {y2}]]}}]\n"
    )
    _, after = judged(with_defect(golden), golden, detections(), rules)
    assert after.verdict is Verdict.PASS
    assert [j.disposition for j in after.judged] == [Disposition.IGNORED_REGION]


def test_anomaly_flags_can_be_turned_off_but_alignment_still_counts() -> None:
    golden = board()
    _, defect = judged(with_defect(golden), golden, detections(), recipe(", anomaly: {enabled: false}"))
    assert defect.verdict is Verdict.PASS
    noise = np.random.default_rng(7).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    _, unrelated = judged(noise, golden, detections(), recipe(", anomaly: {enabled: false}"))
    assert unrelated.verdict is Verdict.REVIEW


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(board(seed=5), id="another-board"),
        pytest.param(np.random.default_rng(7).integers(0, 256, (SIZE, SIZE), dtype=np.uint8), id="noise"),
    ],
)
def test_a_frame_that_cannot_be_aligned_is_review_with_the_reason(frame: np.ndarray) -> None:
    golden = board()
    before, after = judged(frame, golden, detections(), recipe())
    assert before.verdict is Verdict.PASS
    assert after.verdict is Verdict.REVIEW
    [reason] = after.reasons
    assert reason.startswith("not aligned with the golden sample: ")
    assert "quality" in reason or "no alignment" in reason
    assert anomalies(after) == []


def test_a_fail_stays_fail_and_gains_the_reasons() -> None:
    golden = board()
    found = detections(((10, 10, 30, 30), 0.9))  # a defect far from the drawn one
    before, after = judged(with_defect(golden), golden, found, recipe())
    assert before.verdict is Verdict.FAIL
    assert after.verdict is Verdict.FAIL
    assert after.reasons == (*before.reasons, "1 anomaly region no detection explains")
    assert len(anomalies(after)) == 1
    _, unaligned = judged(board(seed=5), golden, found, recipe())
    assert unaligned.verdict is Verdict.FAIL
    assert unaligned.reasons[-1].startswith("not aligned with the golden sample")


def test_a_recipe_without_a_reference_is_judged_as_before() -> None:
    plain = parse_recipe("id: board\nmodel: {name: m}\n")
    golden = board()
    decision = decide(detections(), CLASSES, plain)
    assert comparison(with_defect(golden), golden, plain, IMAGE_MODEL) is None  # nothing asks for a comparison
    assert settle(decision, plain, None) is decision
    compared = comparison(with_defect(golden), golden, recipe(), IMAGE_MODEL)
    assert compared is not None and compared.regions
    assert judge_against_reference(decision, plain, compared.alignment, compared.regions) is decision


def test_the_reference_block_is_part_of_the_version_and_absent_leaves_it_alone() -> None:
    plain = "id: board\nmodel: {name: m}\n"
    assert parse_recipe(plain).version == parse_recipe(plain + "reference: null\n").version
    with_reference = recipe()
    assert with_reference.version != recipe(", anomaly: {min_area_px: 20}").version
    assert parse_recipe(plain).version != parse_recipe(plain + f"reference: {{image: {GOLDEN}}}\n").version


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("alignment: {min_quality: 1.5}", "min_quality"),
        ("anomaly: {pixel_threshold: 0}", "pixel_threshold"),
        ("anomaly: {min_overlap: 0}", "min_overlap"),
        ("anomaly: {typo: 1}", "typo"),
    ],
)
def test_a_reference_block_the_vision_core_would_refuse_is_refused_with_its_field(block: str, field: str) -> None:
    with pytest.raises(RecipeError, match=field):
        recipe(f", {block}")
