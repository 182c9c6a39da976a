"""``lineqa evaluate``'s engine: a model's detections on a dataset split, through the serving code path.

The ONNX model runs exactly as the gateway runs it (fixed-size letterbox, the vision decoder and NMS), once at
a low confidence for the COCO metrics and once with the recipe's own thresholds for the inspection metrics a
plant cares about: the escape rate (a defective part judged PASS) and the false-reject rate (a good part,
labelled defect-free, judged FAIL). Everything here is torch-free, so the promotion gate runs beside serving.

A model trained on references is fed, for every sample, the vision core's input built from the sample and its
reference (the dataset's own, one per sample), aligned under the recipe's limits; a sample that cannot be
aligned is judged REVIEW, never PASS, as on the line. An image model is fed the image alone, references or not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from lineqa.datasets.model import Annotation, LabelledImage
from lineqa.progress import ProgressFn
from lineqa.serving.onnx_model import OnnxModel
from lineqa.training.errors import TrainingError
from lineqa.training.metrics import ImageBoxes, class_curves, confusion_matrix, mean_ap
from lineqa.vision.decision import Verdict, decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import IMAGE_INPUT, ModelSpec, postprocess, preprocess
from lineqa.vision.errors import VisionError
from lineqa.vision.golden import limits_of, require_alignment
from lineqa.vision.image import load_image
from lineqa.vision.recipe import Recipe
from lineqa.vision.reference import Alignment, AlignmentLimits, align, check_encoding, reference_input
from lineqa.vision.tiling import detect_tiled
from lineqa.vision.yolo_output import DecodeOptions

METRIC_OPTIONS = DecodeOptions(conf_threshold=0.001, iou_threshold=0.7, max_det=300)  # as Ultralytics' val


@dataclass(frozen=True)
class EvaluatedImage:
    name: str
    size: tuple[int, int]  # (width, height)
    boxes: ImageBoxes
    verdict: Verdict
    defective: bool
    good: bool  # labelled defect-free (a background image)
    max_confidence: float  # the most confident detection of any class (0 when none)


@dataclass
class Evaluation:
    """Everything ``lineqa evaluate`` reports; ``summary()`` is what run records and the registry keep."""

    classes: tuple[str, ...]
    images: list[EvaluatedImage]
    recipe: Recipe
    unknown_class_predictions: int
    input_encoding: str = IMAGE_INPUT

    def curves(self) -> list[Any]:
        return class_curves([i.boxes for i in self.images], len(self.classes))

    def summary(self) -> dict[str, Any]:
        curves = self.curves()
        map50, map50_95 = mean_ap(curves)
        verdicts = Counter((i.defective, i.good, i.verdict) for i in self.images)
        defective = sum(1 for i in self.images if i.defective)
        good = sum(1 for i in self.images if i.good)
        escapes = sum(n for (d, _, v), n in verdicts.items() if d and v is Verdict.PASS)
        false_rejects = sum(n for (_, g, v), n in verdicts.items() if g and v is Verdict.FAIL)
        reviews = sum(n for (_, _, v), n in verdicts.items() if v is Verdict.REVIEW)
        rule = self.recipe.defaults
        operating_point: dict[str, Any] = {"fail_confidence": rule.fail_confidence}
        operating_point["review_confidence"] = rule.review_confidence
        operating_point["per_class"] = {
            name: {"fail_confidence": r.fail_confidence, "review_confidence": r.review_confidence}
            for name in self.recipe.classes
            for r in [self.recipe.rule_for(name)]
        }
        return {
            "images": len(self.images),
            "input_encoding": self.input_encoding,
            "mAP50": round(map50, 5),
            "mAP50-95": round(map50_95, 5),
            "per_class": {
                name: {"instances": c.truth_count, "AP50": _round(c.ap[0]), "AP50-95": _round(np.nanmean(c.ap))}
                for name, c in zip(self.classes, curves, strict=True)
            },
            "predictions_of_classes_not_in_dataset": self.unknown_class_predictions,
            "inspection": {
                "recipe": {"id": self.recipe.id, "version": self.recipe.version},
                "operating_point": operating_point,
                "defective_parts": defective,
                "good_parts": good,
                "escapes": escapes,
                "escape_rate": _rate(escapes, defective),
                "false_rejects": false_rejects,
                "false_reject_rate": _rate(false_rejects, good),
                "reviews": reviews,
                "review_rate": _rate(reviews, len(self.images)),
            },
        }

    def operating_curve(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(escape rate, false-reject rate) if a part failed on any detection at or above each threshold: the
        trade-off a recipe's ``fail_confidence`` picks one point of (area rules and regions aside)."""
        top = np.array([i.max_confidence for i in self.images])
        defective = np.array([i.defective for i in self.images])
        good = np.array([i.good for i in self.images])
        escapes = np.array([(top[defective] < t).mean() if defective.any() else np.nan for t in thresholds])
        rejects = np.array([(top[good] >= t).mean() if good.any() else np.nan for t in thresholds])
        return escapes, rejects

    def confusion(self) -> np.ndarray:
        return confusion_matrix([i.boxes for i in self.images], len(self.classes))


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 5)


def _rate(count: int, total: int) -> float | None:
    return round(count / total, 5) if total else None


def _class_index(model_classes: tuple[str, ...], classes: tuple[str, ...]) -> np.ndarray:
    """Model class id → evaluation class id (-1 for a class the dataset does not have)."""
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup.get(name, -1) for name in model_classes], dtype=np.int64)


def _truth(image: LabelledImage, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    lookup = {name: i for i, name in enumerate(classes)}
    xyxy = np.array([[b.x1, b.y1, b.x2, b.y2] for b in image.boxes], dtype=np.float64).reshape(-1, 4)
    return xyxy, np.array([lookup[b.class_name] for b in image.boxes], dtype=np.int64)


def _check_references(spec: ModelSpec, images: list[LabelledImage]) -> None:
    """A reference model judged without its references would score noise: refuse, naming the first sample."""
    if not spec.needs_reference:
        return
    try:
        check_encoding(spec.input_encoding, spec.name)
    except VisionError as exc:
        raise TrainingError(str(exc)) from None
    lacking = next((image.name for image in images if image.reference is None), None)
    if lacking is not None:
        raise TrainingError(
            f"model {spec.name!r} was trained on images with their reference, and {lacking} has none: evaluate it "
            "on a dataset version whose samples have references"
        )


def _model_input(
    image: LabelledImage, spec: ModelSpec, limits: AlignmentLimits
) -> tuple[np.ndarray, np.ndarray, Alignment | None]:
    """(the sample's image, what the model is fed, the alignment when that is built from the pair)."""
    try:
        pixels = load_image(image.path)
        if not spec.needs_reference or image.reference is None:
            return pixels, pixels, None
        alignment = align(pixels, load_image(image.reference), limits)
    except (VisionError, OSError) as exc:
        raise TrainingError(f"{image.name}: cannot read the image or its reference: {exc}") from None
    return pixels, reference_input(alignment), alignment


def evaluate(
    model: OnnxModel,
    images: list[LabelledImage],
    classes: tuple[str, ...],
    recipe: Recipe,
    *,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Run the model on labelled images; images nobody annotated (MISSING) are refused, not guessed."""
    unlabelled = [i.name for i in images if i.annotation is Annotation.MISSING]
    if unlabelled:
        raise TrainingError(f"{len(unlabelled)} images have no annotation (e.g. {unlabelled[0]}): label them first")
    if not images:
        raise TrainingError("nothing to evaluate: the split holds no images")
    spec = model.spec
    recipe.check_classes(spec.class_names)
    _check_references(spec, images)
    limits = limits_of(recipe)
    mapping = _class_index(spec.class_names, classes)
    recipe_options = DecodeOptions(conf_threshold=recipe.min_confidence, iou_threshold=recipe.iou_threshold)
    tiling = recipe.tiling.options() if recipe.tiling else None
    results: list[EvaluatedImage] = []
    unknown = 0
    for index, image in enumerate(images):
        pixels, fed, alignment = _model_input(image, spec, limits)
        tensor, letterboxes = preprocess([fed], spec)
        raw = model.infer(tensor)
        (scored,) = postprocess(raw, letterboxes, spec, METRIC_OPTIONS)
        judged: Detections = (
            detect_tiled(fed, model.infer, spec, tiling, recipe_options)
            if tiling
            else postprocess(raw, letterboxes, spec, recipe_options)[0]
        )
        decision = decide(judged, spec.class_names, recipe)
        if alignment is not None:
            decision = require_alignment(decision, alignment)
        pred_class = mapping[scored.class_id]
        unknown += int((pred_class < 0).sum())
        truth_xyxy, truth_class = _truth(image, classes)
        boxes = ImageBoxes(truth_xyxy, truth_class, scored.xyxy, scored.confidence, pred_class)
        good = image.annotation is Annotation.BACKGROUND
        top = float(scored.confidence.max()) if len(scored) else 0.0
        size = (pixels.shape[1], pixels.shape[0])
        results.append(EvaluatedImage(image.name, size, boxes, decision.verdict, bool(image.boxes), good, top))
        if progress:
            progress(index + 1, len(images))
    return Evaluation(classes, results, recipe, unknown, spec.input_encoding)
