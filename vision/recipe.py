"""Product recipes: how a product's detections become PASS, FAIL or REVIEW.

A recipe is YAML, validated by pydantic, and versioned by content: its version is the SHA-256 of its
canonical JSON, so the same rules always have the same version and a verdict is reproducible from
(image, model version, recipe version). Example::

    id: pcb-top
    model: {name: pcb-defects, version: 3}
    mm_per_px: 0.02
    defaults: {fail_confidence: 0.5, review_confidence: 0.3}
    classes:
      pin-hole: {fail_confidence: 0.4, min_area_mm2: 0.05}
      copper: {max_count: 2}
    ignore:
      - name: fiducial
        polygon: [[0, 0], [60, 0], [60, 60], [0, 60]]
    tiling: {tile_px: 640, overlap_ratio: 0.2}
    reference:                      # optional: judge each part against a golden sample too
      image: 3f1c...e9              # the id 'lineqa references add' printed (the image file's SHA-256)
      alignment: {min_quality: 0.8, max_shift_px: 24}
      anomaly: {min_area_px: 12, min_contrast: 90, min_overlap: 0.5}
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from lineqa.vision.errors import RecipeError
from lineqa.vision.reference import AlignmentLimits, AnomalySettings
from lineqa.vision.tiling import TilingOptions

Confidence = Annotated[float, Field(gt=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassRule(_Strict):
    """When detections of one class make a part fail or need review."""

    fail_confidence: Confidence = Field(0.5, description="a detection at or above this is a defect")
    review_confidence: Confidence | None = Field(
        None, description="lower edge of the REVIEW band [review_confidence, fail_confidence); none: no band"
    )
    min_area_mm2: float = Field(0.0, ge=0.0, description="smaller detections are ignored (needs mm_per_px)")
    max_count: int = Field(0, ge=0, description="defects of this class a part may have and still pass")

    @model_validator(mode="after")
    def _band_below_threshold(self) -> ClassRule:
        if self.review_confidence is not None and self.review_confidence > self.fail_confidence:
            raise ValueError(
                f"review_confidence {self.review_confidence} is above fail_confidence {self.fail_confidence}"
            )
        return self

    @property
    def lowest_confidence(self) -> float:
        return self.fail_confidence if self.review_confidence is None else self.review_confidence


class Region(_Strict):
    """A named polygon in source-image pixels."""

    name: str = Field(min_length=1)
    polygon: list[tuple[float, float]] = Field(min_length=3)


class ModelRef(_Strict):
    name: str = Field(min_length=1)
    version: int | None = Field(None, ge=1, description="a Triton model version; none: the latest ready one")


class TilingSettings(_Strict):
    tile_px: int = Field(ge=32)
    overlap_ratio: float = Field(0.2, ge=0.0, lt=1.0)
    include_full_image: bool = True
    merge_threshold: float = Field(0.5, gt=0.0, le=1.0)

    def options(self) -> TilingOptions:
        return TilingOptions(self.tile_px, self.overlap_ratio, self.include_full_image, self.merge_threshold)


class _CoreMirror(_Strict):
    """Recipe fields that mirror a vision-core dataclass: the defaults are read from it and a recipe is checked
    by building it, so the YAML and the core never disagree on what is valid."""

    @model_validator(mode="after")
    def _valid_for_the_core(self) -> _CoreMirror:
        self.core()
        return self

    def core(self) -> object:
        raise NotImplementedError


class AlignmentRule(_CoreMirror):
    """The recipe's :class:`AlignmentLimits`."""

    min_quality: float = AlignmentLimits.min_quality
    max_shift_px: float = AlignmentLimits.max_shift_px
    max_rotation_deg: float = AlignmentLimits.max_rotation_deg
    max_scale_change: float = AlignmentLimits.max_scale_change

    def core(self) -> AlignmentLimits:
        return AlignmentLimits(**self.model_dump())


class AnomalyRule(_CoreMirror):
    """The recipe's :class:`AnomalySettings`, plus whether anomaly flags are raised at all and how much of a
    region a flagged detection must cover to explain it (see :func:`lineqa.vision.reference.unexplained`).

    ``enabled: false`` keeps the alignment check (an unalignable part still goes to REVIEW) without the flags,
    for a product whose golden sample is good enough to place parts but not to compare them.
    """

    enabled: bool = True
    min_overlap: float = Field(0.5, gt=0.0, le=1.0)
    blur_sigma_px: float = AnomalySettings.blur_sigma_px
    pixel_threshold: int = AnomalySettings.pixel_threshold
    opening_px: int = AnomalySettings.opening_px
    min_area_px: int = AnomalySettings.min_area_px
    min_contrast: float = AnomalySettings.min_contrast

    def core(self) -> AnomalySettings:
        return AnomalySettings(**self.model_dump(exclude={"enabled", "min_overlap"}))


class ReferenceRule(_Strict):
    """A golden sample of the product, by the id its tenant's reference store gave it."""

    image: str = Field(pattern=r"^[0-9a-f]{64}$", description="the SHA-256 'lineqa references add' printed")
    alignment: AlignmentRule = AlignmentRule()
    anomaly: AnomalyRule = AnomalyRule()


class Recipe(_Strict):
    """One product's inspection rules."""

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    model: ModelRef
    mm_per_px: float | None = Field(None, gt=0.0, description="the camera's scale at the part")
    defaults: ClassRule = ClassRule()
    classes: dict[str, ClassRule] = Field(default_factory=dict)
    include: list[Region] = Field(default_factory=list, description="only these areas are inspected")
    ignore: list[Region] = Field(default_factory=list, description="these areas are never inspected")
    iou_threshold: float = Field(0.7, gt=0.0, le=1.0, description="NMS IoU, as yolo predict's iou")
    tiling: TilingSettings | None = None
    reference: ReferenceRule | None = Field(None, description="judge each part against a golden sample too")

    _rules: dict[str, ClassRule] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_class_rules(self) -> Recipe:
        """A class rule states only what differs from ``defaults``; the rest is inherited."""
        for name, rule in self.classes.items():
            merged = {**self.defaults.model_dump(), **rule.model_dump(exclude_unset=True)}
            try:
                self._rules[name] = ClassRule.model_validate(merged)
            except ValidationError as exc:
                raise ValueError(f"classes.{name} with the defaults: {exc.errors()[0]['msg']}") from exc
        resolved_rules = {"defaults": self.defaults, **{f"classes.{k}": v for k, v in self._rules.items()}}
        for where, resolved in resolved_rules.items():
            if resolved.min_area_mm2 > 0 and self.mm_per_px is None:
                raise ValueError(f"{where}.min_area_mm2 needs the camera scale: set mm_per_px")
        return self

    def rule_for(self, class_name: str) -> ClassRule:
        """The class's rule with the defaults filled in, or the defaults for a class without one."""
        return self._rules.get(class_name, self.defaults)

    @property
    def min_confidence(self) -> float:
        """The lowest confidence any rule looks at: detections below it never matter to the verdict."""
        return min(rule.lowest_confidence for rule in (self.defaults, *self._rules.values()))

    @cached_property
    def version(self) -> str:
        """The content hash. A recipe without a reference hashes as it did before references existed, so
        the versions records already name stay valid."""
        content = self.model_dump(mode="json", exclude={"reference"} if self.reference is None else None)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def check_classes(self, class_names: tuple[str, ...] | list[str]) -> None:
        """Refuse a recipe that names classes its model does not have (a typo would silently never fire)."""
        unknown = sorted(set(self.classes) - set(class_names))
        if unknown:
            raise RecipeError(
                f"recipe {self.id!r} has rules for {unknown}, which model {self.model.name!r} does not detect "
                f"(its classes: {list(class_names)})"
            )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe YAML; errors name the source and every offending field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{source}: invalid recipe\n{_describe(exc)}") from exc


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
    return parse_recipe(text, str(path))
