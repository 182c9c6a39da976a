"""How doubtful a part's verdict is, and why: the review queue shows the most doubtful parts first.

Three signals add up to a part's doubt; each comes with the sentence the queue shows as the order's reason.

- **Near a threshold** (0 to 1): the flagged detection whose score is nearest one of its class's thresholds
  in the recipe version that judged the part (``fail_confidence``, and ``review_confidence`` where the recipe
  has a REVIEW band). ``1 - margin / NEAR``: 1 on the threshold, 0 at :data:`NEAR` or further. Thresholds come
  from the recipe's versions in the database, found by the content hash the record names (every version is
  kept); where that version cannot be found, a detection in the REVIEW band counts :data:`UNKNOWN_BAND`, and
  the reason says the thresholds are unknown.
- **Anomaly regions** (+ :data:`ANOMALY`): findings of golden-sample comparison, regions no detection explains
  (a defect recorded with disposition ``anomaly``): nobody has labelled that kind of defect yet.
- **Model versions disagree** (+ :data:`DISAGREEMENT`): another model version judged the same view of the
  same part (same tenant, part id and camera) with another verdict, e.g. a re-inspection or a shadow run
  after a promotion. ERROR is no opinion. Other cameras are left out on purpose: they see other sides of the
  part, whose verdicts may rightly differ.

Equal doubt: newest first. A PASS part of the sample has no recorded detection (the gateway records only
flagged ones), so only a disagreement raises it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from lineqa.serving.database import DatabaseError
from lineqa.serving.recipes import RecipeStore
from lineqa.vision.recipe import ClassRule, Recipe

NEAR = 0.15
UNKNOWN_BAND = 0.5
ANOMALY = 0.75
DISAGREEMENT = 1.0
ANOMALY_DISPOSITION = "anomaly"

RecipeLookup = Callable[[str, str, str], Recipe | None]
"""(tenant, recipe id, recipe version) -> that version, or None when it is not known here."""
Rules = Callable[[str], ClassRule]
"""class name -> its rule in one recipe version (``Recipe.rule_for``)."""


class Judged(Protocol):
    """One recorded detection, as much of it as doubt needs."""

    @property
    def class_name(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def disposition(self) -> str: ...


Opinions = Mapping[tuple[str, int], frozenset[str]]
"""(model name, version) -> the verdicts that version gave one view of one part."""


@dataclass(frozen=True)
class Doubt:
    score: float
    reasons: tuple[str, ...]

    def text(self) -> str:
        return "; ".join(self.reasons)


def recipe_versions(store: RecipeStore) -> RecipeLookup:
    """Recipe versions as the database keeps them, found by the content hash a record names (versions never
    change, so each is read once)."""

    @functools.lru_cache(maxsize=1024)
    def lookup(tenant: str, recipe_id: str, version: str) -> Recipe | None:
        try:
            return store.with_hash(tenant, recipe_id, version)
        except DatabaseError:
            return None

    return lookup


def _near_threshold(defects: Iterable[Judged], rules: Rules) -> tuple[float, str] | None:
    best: tuple[float, str] | None = None
    for d in defects:
        rule = rules(d.class_name)
        for name, threshold in (("fail", rule.fail_confidence), ("review", rule.review_confidence)):
            if threshold is None:
                continue
            margin = abs(d.confidence - threshold)
            if best is None or margin < best[0]:
                side = "above" if d.confidence >= threshold else "below"
                best = (margin, f"{d.class_name} {d.confidence:.2f} is {margin:.2f} {side} the {name} threshold "
                                f"{threshold:g}")  # fmt: skip
    return best


def _threshold_signal(defects: list[Judged], rules: Rules | None, recipe_name: str) -> tuple[float, str | None]:
    if not defects:
        return 0.0, None
    if rules is None:
        banded = [d for d in defects if d.disposition == "review"]
        if not banded:
            return 0.0, None
        d = max(banded, key=lambda j: j.confidence)
        return UNKNOWN_BAND, (f"{d.class_name} {d.confidence:.2f} in the REVIEW band (thresholds unknown: recipe "
                              f"{recipe_name} is not in the recipe versions)")  # fmt: skip
    nearest = _near_threshold(defects, rules)
    if nearest is None:
        return 0.0, None
    margin, text = nearest
    return max(0.0, 1.0 - margin / NEAR), text


def _disagreement(model: tuple[str, int], verdict: str, opinions: Opinions) -> str | None:
    if not opinions:
        return None
    others = sorted(
        f"{name} v{version} {other}"
        for (name, version), verdicts in opinions.items()
        if (name, version) != model
        for other in verdicts
        if other != verdict
    )
    if not others:
        return None
    return f"model versions disagree on this view: {', '.join(others)} (this record: {model[0]} v{model[1]} {verdict})"


def doubt(
    verdict: str,
    defects: Iterable[Judged],
    rules: Rules | None,
    recipe_name: str,
    model: tuple[str, int],
    opinions: Opinions,
) -> Doubt:
    """The doubt about one record's verdict (see the module docstring); ``rules`` are the class rules of the recipe
    version that judged it (``Recipe.rule_for``), None when that version is not known here."""
    listed = list(defects)
    anomalies = sum(d.disposition == ANOMALY_DISPOSITION for d in listed)
    flagged = [d for d in listed if d.disposition in ("defect", "review")]
    score, near = _threshold_signal(flagged, rules, recipe_name)
    reasons = [near] if near and score > 0 else []
    disagreement = _disagreement(model, verdict, opinions)
    if disagreement:
        score += DISAGREEMENT
        reasons.insert(0, disagreement)
    if anomalies:
        score += ANOMALY
        reasons.append(f"{anomalies} anomaly region{'' if anomalies == 1 else 's'} (golden-sample comparison)")
    if not reasons:
        if verdict == "PASS":
            reasons.append("PASS sample: a spot check for escapes")
        elif near:
            reasons.append(f"clear: {near}")
        else:
            reasons.append("no doubt signal")
    return Doubt(round(score, 4), tuple(reasons))
