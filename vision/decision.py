"""Turn a model's detections into a verdict with the recipe's reasons.

Per detection, in this order: outside the inspected regions (not in any ``include`` polygon when there are
some, or in an ``ignore`` polygon; judged by the box centre) → ignored; smaller than the class's
``min_area_mm2`` → ignored; at or above ``fail_confidence`` → a defect; within the review band → review;
below → not a defect. Per class, more defects than ``max_count`` → FAIL. Otherwise any review detection →
REVIEW. Otherwise PASS. ``decide`` never returns ERROR: a frame without a model result never reaches it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from lineqa.vision.detections import Detections
from lineqa.vision.recipe import Recipe, Region

NO_DEFECT = "no defect at or above the recipe's thresholds"
"""The reason of a PASS with nothing to report; a later step that escalates the verdict drops it."""


class Verdict(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    REVIEW = "REVIEW"
    ERROR = "ERROR"


class Disposition(str, Enum):
    DEFECT = "defect"
    REVIEW = "review"
    IGNORED_REGION = "ignored_region"
    TOO_SMALL = "too_small"
    BELOW_THRESHOLD = "below_threshold"
    ANOMALY = "anomaly"  # a golden-sample region no detection explains (lineqa.vision.golden)


_FLAGGED = (Disposition.DEFECT, Disposition.REVIEW, Disposition.ANOMALY)


@dataclass(frozen=True)
class JudgedDefect:
    """One detection as the recipe saw it."""

    class_id: int
    class_name: str
    confidence: float
    xyxy: tuple[float, float, float, float]
    area_px: float
    area_mm2: float | None
    disposition: Disposition


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]
    judged: tuple[JudgedDefect, ...]
    recipe_id: str
    recipe_version: str

    @property
    def flagged(self) -> tuple[JudgedDefect, ...]:
        """The findings that count: defects, review ones and anomalies (what a result and a record list)."""
        return tuple(j for j in self.judged if j.disposition in _FLAGGED)


def _inside_any(points: np.ndarray, regions: list[Region]) -> np.ndarray:
    inside = np.zeros(len(points), dtype=bool)
    for region in regions:
        contour = np.asarray(region.polygon, dtype=np.float32).reshape(-1, 1, 2)
        tests = [cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points]
        inside |= np.array(tests, dtype=bool)
    return inside


def in_inspected_area(centers: np.ndarray, recipe: Recipe) -> np.ndarray:
    """True for each (x, y) centre that lies in the recipe's inspected area: one rule for detections and for
    anomaly regions alike, so an ``ignore`` polygon (a fiducial, a label) silences both."""
    inspected = _inside_any(centers, recipe.include) if recipe.include else np.ones(len(centers), dtype=bool)
    if recipe.ignore:
        inspected &= ~_inside_any(centers, recipe.ignore)
    return inspected


def _judge(detections: Detections, class_names: tuple[str, ...], recipe: Recipe) -> list[JudgedDefect]:
    in_region = in_inspected_area(detections.centers, recipe)
    areas = detections.area_px
    scale = recipe.mm_per_px
    judged = []
    for i in range(len(detections)):
        class_id = int(detections.class_id[i])
        name = class_names[class_id] if class_id < len(class_names) else str(class_id)
        rule = recipe.rule_for(name)
        confidence = float(detections.confidence[i])
        area_mm2 = float(areas[i]) * scale * scale if scale is not None else None
        if not in_region[i]:
            disposition = Disposition.IGNORED_REGION
        elif area_mm2 is not None and area_mm2 < rule.min_area_mm2:
            disposition = Disposition.TOO_SMALL
        elif confidence >= rule.fail_confidence:
            disposition = Disposition.DEFECT
        elif rule.review_confidence is not None and confidence >= rule.review_confidence:
            disposition = Disposition.REVIEW
        else:
            disposition = Disposition.BELOW_THRESHOLD
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        judged.append(
            JudgedDefect(class_id, name, confidence, (x1, y1, x2, y2), float(areas[i]), area_mm2, disposition)
        )
    return judged


def decide(detections: Detections, class_names: tuple[str, ...], recipe: Recipe) -> Decision:
    """The verdict for one image's detections under a recipe, with one reason per rule that fired."""
    judged = _judge(detections, class_names, recipe)
    defects = Counter(j.class_name for j in judged if j.disposition is Disposition.DEFECT)
    reviews = Counter(j.class_name for j in judged if j.disposition is Disposition.REVIEW)
    failing, tolerated = [], []
    for name, count in sorted(defects.items()):
        rule = recipe.rule_for(name)
        text = f"{count} × {name} at confidence ≥ {rule.fail_confidence:g}"
        if count > rule.max_count:
            failing.append(f"{text} (allowed {rule.max_count})")
        else:
            tolerated.append(f"{text} tolerated (allowed {rule.max_count})")
    reviewing = [
        f"{count} × {name} in the review band [{recipe.rule_for(name).review_confidence:g}, "
        f"{recipe.rule_for(name).fail_confidence:g})"
        for name, count in sorted(reviews.items())
    ]
    if failing:
        verdict, reasons = Verdict.FAIL, failing + reviewing + tolerated
    elif reviewing:
        verdict, reasons = Verdict.REVIEW, reviewing + tolerated
    else:
        verdict, reasons = Verdict.PASS, tolerated or [NO_DEFECT]
    return Decision(verdict, tuple(reasons), tuple(judged), recipe.id, recipe.version)
