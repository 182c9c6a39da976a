"""From detections to PASS / FAIL / REVIEW with reasons: one row per rule of the recipe."""

from __future__ import annotations

import numpy as np
import pytest

from lineqa.vision.decision import Disposition, Verdict, decide
from lineqa.vision.detections import Detections
from lineqa.vision.recipe import parse_recipe

NAMES = ("scratch", "dent", "stain")
RECIPE = parse_recipe(
    """
id: bracket
model: {name: metal}
mm_per_px: 0.1
defaults: {fail_confidence: 0.5, review_confidence: 0.3}
classes:
  stain: {fail_confidence: 0.6, min_area_mm2: 4.0}
  dent: {max_count: 1}
ignore:
  - name: logo
    polygon: [[0, 0], [100, 0], [100, 100], [0, 100]]
"""
)


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    if not rows:
        return Detections.empty()
    array = np.array(rows, dtype=np.float64)
    return Detections(array[:, :4], array[:, 4], array[:, 5].astype(int))


BIG = (200, 200, 240, 240)  # 40 x 40 px = 16 mm² at 0.1 mm/px
SMALL = (200, 200, 210, 210)  # 1 mm²
IN_LOGO = (10, 10, 50, 50)


@pytest.mark.parametrize(
    ("detections", "verdict", "dispositions", "reason"),
    [
        (dets(), Verdict.PASS, [], "no defect at or above"),
        (dets((*BIG, 0.2, 0)), Verdict.PASS, [Disposition.BELOW_THRESHOLD], "no defect"),
        (dets((*BIG, 0.35, 0)), Verdict.REVIEW, [Disposition.REVIEW], "1 × scratch in the review band [0.3, 0.5)"),
        (dets((*BIG, 0.5, 0)), Verdict.FAIL, [Disposition.DEFECT], "1 × scratch at confidence ≥ 0.5 (allowed 0)"),
        (dets((*BIG, 0.55, 2)), Verdict.REVIEW, [Disposition.REVIEW], "stain in the review band [0.3, 0.6)"),
        (dets((*SMALL, 0.9, 2)), Verdict.PASS, [Disposition.TOO_SMALL], "no defect"),
        (dets((*SMALL, 0.9, 0)), Verdict.FAIL, [Disposition.DEFECT], "scratch"),  # no size rule for scratches
        (dets((*IN_LOGO, 0.99, 0)), Verdict.PASS, [Disposition.IGNORED_REGION], "no defect"),
        (
            dets((*BIG, 0.9, 1)),
            Verdict.PASS,
            [Disposition.DEFECT],
            "1 × dent at confidence ≥ 0.5 tolerated (allowed 1)",
        ),
        (
            dets((*BIG, 0.9, 1), (300, 300, 330, 330, 0.8, 1)),
            Verdict.FAIL,
            [Disposition.DEFECT, Disposition.DEFECT],
            "2 × dent at confidence ≥ 0.5 (allowed 1)",
        ),
        (
            dets((*BIG, 0.9, 1), (300, 300, 330, 330, 0.4, 0)),
            Verdict.REVIEW,
            [Disposition.DEFECT, Disposition.REVIEW],
            "1 × dent at confidence ≥ 0.5 tolerated",
        ),
    ],
    ids=[
        "nothing",
        "below-band",
        "in-band",
        "at-threshold",
        "class-threshold",
        "too-small",
        "no-size-rule",
        "ignored-region",
        "tolerated",
        "over-count",
        "review-beats-tolerated",
    ],
)
def test_decision_table(detections: Detections, verdict: Verdict, dispositions: list[Disposition], reason: str) -> None:
    decision = decide(detections, NAMES, RECIPE)
    assert decision.verdict is verdict
    assert [j.disposition for j in decision.judged] == dispositions
    assert any(reason in r for r in decision.reasons), decision.reasons
    assert decision.recipe_version == RECIPE.version


def test_include_regions_limit_inspection() -> None:
    recipe = parse_recipe(
        "id: r\nmodel: {name: m}\ninclude: [{name: pad, polygon: [[0, 0], [100, 0], [100, 100], [0, 100]]}]\n"
    )
    decision = decide(dets((10, 10, 20, 20, 0.9, 0), (300, 300, 310, 310, 0.9, 0)), NAMES, recipe)
    assert [j.disposition for j in decision.judged] == [Disposition.DEFECT, Disposition.IGNORED_REGION]
    assert decision.verdict is Verdict.FAIL and len(decision.flagged) == 1


def test_areas_are_reported_in_px_and_mm2() -> None:
    judged = decide(dets((*BIG, 0.9, 0)), NAMES, RECIPE).judged[0]
    assert judged.area_px == 1600 and judged.area_mm2 == pytest.approx(16.0)
    no_scale = parse_recipe("id: r\nmodel: {name: m}\n")
    assert decide(dets((*BIG, 0.9, 0)), NAMES, no_scale).judged[0].area_mm2 is None


def test_same_inputs_same_decision() -> None:
    d = dets((*BIG, 0.9, 1), (300, 300, 330, 330, 0.4, 0))
    assert decide(d, NAMES, RECIPE) == decide(d, NAMES, RECIPE)
