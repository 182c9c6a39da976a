"""A recipe's golden sample applied to a verdict: the one step the gateway and ``lineqa predict`` share.

The detector's :class:`~lineqa.vision.decision.Decision` stays what it was; the golden sample can only add
doubt. A frame that cannot be aligned with the sample within the recipe's limits goes to REVIEW with the
alignment's reason (the comparison means nothing, so it must never let the part PASS), and a region that
differs from the sample with no flagged detection to explain it becomes an ``anomaly`` finding that sends the
part to REVIEW: what lets a product with no labelled defects get useful flags from its first good part. A FAIL
is never softened: the reasons are added to it.

Splitting the work in two (:func:`comparison` is the image work, made once for the rule and for a model trained
on frame+reference pairs; :func:`settle` the rule) lets the gateway run the image work off its event loop and
still apply the very same rule as ``predict`` and ``evaluate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lineqa.vision.decision import NO_DEFECT, Decision, Disposition, JudgedDefect, Verdict, in_inspected_area
from lineqa.vision.detector import ModelSpec
from lineqa.vision.recipe import Recipe, ReferenceRule
from lineqa.vision.reference import (
    Alignment,
    AlignmentLimits,
    AnomalyRegion,
    align,
    anomaly_regions,
    reference_input,
    unexplained,
)

ANOMALY_CLASS = "anomaly"
"""The class name of a golden-sample finding, as results, records and the review app show it."""
ANOMALY_CLASS_ID = -1
"""Not a class of any model: a finding of the comparison, not a detection."""


def limits_of(recipe: Recipe) -> AlignmentLimits:
    """The recipe's alignment limits, else the vision core's defaults: a reference model aligns every frame to
    its reference whether or not the recipe has a golden sample of its own."""
    return recipe.reference.alignment.core() if recipe.reference is not None else AlignmentLimits()


@dataclass(frozen=True)
class Comparison:
    """A frame against its reference, made once for whatever needs it: the recipe's golden-sample rule and a
    reference model's input. ``model_image`` is what the model is run on: the frame, or for a model trained on
    pairs the encoded pair; None for a pair that cannot be aligned, which is no input such a model was trained
    on (the part is REVIEW through :func:`settle`, the model is not run)."""

    alignment: Alignment
    regions: list[AnomalyRegion]
    model_image: np.ndarray | None


def comparison(frame: np.ndarray, reference: np.ndarray, recipe: Recipe, spec: ModelSpec) -> Comparison | None:
    """``frame`` against ``reference`` under the recipe's limits (the defaults without a rule): None when neither
    the recipe's rule nor the model needs it. Tens of milliseconds of CPU: the gateway calls it off its loop."""
    if recipe.reference is None and not spec.needs_reference:
        return None
    alignment = align(frame, reference, limits_of(recipe))
    regions = regions_of(alignment, recipe.reference) if recipe.reference is not None else []
    if not spec.needs_reference:
        return Comparison(alignment, regions, frame)
    return Comparison(alignment, regions, reference_input(alignment) if alignment.aligned else None)


def settle(decision: Decision, recipe: Recipe, compared: Comparison | None) -> Decision:
    """The verdict once the reference has had its say: the recipe's rule when it has one, else (a reference
    model's own need) only the alignment's; ``decision`` itself without a comparison."""
    if compared is None:
        return decision
    if recipe.reference is not None:
        return judge_against_reference(decision, recipe, compared.alignment, compared.regions)
    return require_alignment(decision, compared.alignment)


def regions_of(alignment: Alignment, rule: ReferenceRule) -> list[AnomalyRegion]:
    """The anomaly regions of an alignment: none when the frame is not aligned (a misplaced comparison would
    flag the whole part) or the rule turns anomaly flags off."""
    if not alignment.aligned or not rule.anomaly.enabled:
        return []
    return anomaly_regions(alignment, rule.anomaly.core())


def _finding(region: AnomalyRegion, recipe: Recipe, inspected: bool) -> JudgedDefect:
    """An anomaly region as a judged finding. Its confidence is the region's mean contrast over 255: a
    brighter difference is a surer one, and the scale stays in [0, 1] like a detector's."""
    scale = recipe.mm_per_px
    area_mm2 = region.area_px * scale * scale if scale is not None else None
    disposition = Disposition.ANOMALY if inspected else Disposition.IGNORED_REGION
    box = (float(region.x1), float(region.y1), float(region.x2), float(region.y2))
    confidence = min(region.contrast / 255.0, 1.0)
    return JudgedDefect(ANOMALY_CLASS_ID, ANOMALY_CLASS, confidence, box, float(region.area_px), area_mm2, disposition)


def _escalated(decision: Decision, reason: str, findings: Sequence[JudgedDefect]) -> Decision:
    """``decision`` with one more reason for REVIEW: a FAIL stays FAIL, anything else becomes REVIEW."""
    verdict = Verdict.FAIL if decision.verdict is Verdict.FAIL else Verdict.REVIEW
    reasons = (*(r for r in decision.reasons if r != NO_DEFECT), reason)
    return replace(decision, verdict=verdict, reasons=reasons, judged=decision.judged + tuple(findings))


def judge_against_reference(
    decision: Decision, recipe: Recipe, alignment: Alignment, regions: Sequence[AnomalyRegion]
) -> Decision:
    """The verdict once the golden sample has had its say (see the module's docstring).

    ``regions`` are :func:`regions_of` the same alignment. A region counts as explained when a flagged detection
    (defect or review) covers at least the recipe's ``min_overlap`` of it; regions outside the recipe's
    inspected area are kept as ignored findings, so the record still says they were seen. A recipe without a
    ``reference`` returns ``decision`` unchanged.
    """
    if recipe.reference is None:
        return decision
    if not alignment.aligned:
        return require_alignment(decision, alignment)
    boxes = [judged.xyxy for judged in decision.flagged]
    left = unexplained(regions, boxes, recipe.reference.anomaly.min_overlap)
    if not left:
        return decision
    centres = np.array([((r.x1 + r.x2) / 2.0, (r.y1 + r.y2) / 2.0) for r in left], dtype=np.float64)
    findings = [
        _finding(r, recipe, bool(inside)) for r, inside in zip(left, in_inspected_area(centres, recipe), strict=True)
    ]
    counted = sum(f.disposition is Disposition.ANOMALY for f in findings)
    if not counted:
        return replace(decision, judged=decision.judged + tuple(findings))
    noun = "region" if counted == 1 else "regions"
    return _escalated(decision, f"{counted} anomaly {noun} no detection explains", findings)


def require_alignment(decision: Decision, alignment: Alignment) -> Decision:
    """``decision`` unless the frame was not aligned with its reference; then REVIEW (a FAIL stays FAIL) with the
    alignment's reason. The rule for any judgement built on a comparison with a reference, a reference model's
    detections included: their input holds a misplaced reference, so they cannot clear the part."""
    if alignment.aligned:
        return decision
    return _escalated(decision, f"not aligned with the golden sample: {alignment.reason}", [])
