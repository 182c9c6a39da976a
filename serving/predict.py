"""Run the serving pipeline on image files: decode, detect (tiled if asked), judge, draw.

This is ``lineqa predict``'s engine and the demo's; the gateway runs the same vision calls with Triton as the
inference backend, including the golden-sample step (:mod:`lineqa.vision.golden`) of a recipe with a
``reference:``, so both give the same verdict for the same image.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lineqa.serving.onnx_model import OnnxModel
from lineqa.vision.decision import Decision, decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import detect
from lineqa.vision.errors import ImageError, RecipeError
from lineqa.vision.golden import comparison, settle
from lineqa.vision.image import ImageLimits, load_image
from lineqa.vision.overlay import draw_decision
from lineqa.vision.recipe import ClassRule, ModelRef, Recipe
from lineqa.vision.reference import check_encoding
from lineqa.vision.tiling import TilingOptions, detect_tiled
from lineqa.vision.yolo_output import DecodeOptions


@dataclass(frozen=True)
class PredictConfig:
    options: DecodeOptions
    tiling: TilingOptions | None = None
    limits: ImageLimits = field(default_factory=ImageLimits)
    save_dir: Path | None = None
    # The reference every image is compared with, decoded: the recipe's golden sample when it names one, and
    # what a reference model's input is built from (then needed even when the recipe has none).
    reference: np.ndarray | None = None


def default_recipe(model_name: str) -> Recipe:
    """Without a recipe: confidence 0.5 or more is a defect, 0.25 (``yolo predict``'s ``conf``) is review."""
    return Recipe(id="default", model=ModelRef(name=model_name), defaults=ClassRule(review_confidence=0.25))


def _detection_json(decision: Decision) -> list[dict[str, Any]]:
    return [
        {
            "class_id": j.class_id,
            "class_name": j.class_name,
            "confidence": round(j.confidence, 6),
            "box": [round(v, 3) for v in j.xyxy],
            "area_px": round(j.area_px, 3),
            "area_mm2": None if j.area_mm2 is None else round(j.area_mm2, 6),
            "disposition": j.disposition.value,
        }
        for j in decision.judged
    ]


def predict_files(
    paths: Iterable[Path], model: OnnxModel, recipe: Recipe, config: PredictConfig
) -> Iterator[dict[str, Any]]:
    """One JSON-ready record per image, in order; an unreadable image yields a record with an ``error``."""
    spec = model.spec
    recipe.check_classes(spec.class_names)
    if recipe.reference is not None and config.reference is None:
        raise RecipeError(f"recipe {recipe.id!r} compares parts with a golden sample, and none was given")
    if spec.needs_reference:
        check_encoding(spec.input_encoding, spec.name)
        if config.reference is None:
            raise RecipeError(f"model {spec.name!r} was trained on images with their reference, and none was given")
    if config.save_dir:
        config.save_dir.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths):
        record: dict[str, Any] = {"image": str(path)}
        started = time.perf_counter()
        try:
            image = load_image(path, config.limits)
        except (ImageError, OSError) as exc:
            record["error"] = {"type": type(exc).__name__, "message": str(exc)}
            yield record
            continue
        decoded = time.perf_counter()
        compared = comparison(image, config.reference, recipe, spec) if config.reference is not None else None
        pixels = image if compared is None else compared.model_image
        detections: Detections
        if pixels is None:  # a misplaced pair is no input the model was trained on: REVIEW, not inferred
            detections = Detections.empty()
        elif config.tiling:
            detections = detect_tiled(pixels, model.infer, spec, config.tiling, config.options)
        else:
            detections = detect([pixels], model.infer, spec, config.options)[0]
        inferred = time.perf_counter()
        decision = settle(decide(detections, spec.class_names, recipe), recipe, compared)
        if compared is not None:
            alignment = compared.alignment
            record["alignment"] = {"aligned": alignment.aligned, "quality": round(alignment.quality, 4),
                                   "reason": alignment.reason, "anomaly_regions": len(compared.regions)}  # fmt: skip
        judged = time.perf_counter()
        record |= {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "model": {"name": spec.name, "path": str(model.path)},
            "recipe": {"id": recipe.id, "version": recipe.version},
            "verdict": decision.verdict.value,
            "reasons": list(decision.reasons),
            "detections": _detection_json(decision),
            "timings_ms": {
                "decode": round((decoded - started) * 1e3, 3),
                "detect": round((inferred - decoded) * 1e3, 3),
                "decision": round((judged - inferred) * 1e3, 3),
            },
        }
        if config.save_dir:
            overlay_path = config.save_dir / f"{index:05d}_{path.stem}.jpg"
            cv2.imwrite(str(overlay_path), draw_decision(image, decision))
            record["overlay"] = str(overlay_path)
        yield record
