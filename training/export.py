"""Export a trained run to ONNX and hold it to the parity gate; both results go into the run's record.

The ONNX model has a dynamic batch (Triton batches frames of several cameras) and the run's training image
size. The golden set is the dataset's held-out images (test, else val), taken in a fixed order so that the
same run always gets the same gate; ``--golden`` can point at a folder of the plant's own reference parts.

A run trained on references (``lineqa train --input reference``) has its encoding written into the ONNX file's
metadata beside Ultralytics' own keys, so the registry, ``predict`` and the gateway know to build each frame's
input from its reference. Its held-out images in the run are already that input, built by the vision core
from each sample's pair, so the gate holds both sides to the same encoded inputs; a ``--golden`` folder for
such a model must hold encoded inputs too (as ``lineqa datasets export --input reference`` writes them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import onnx

from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.predict import default_recipe
from lineqa.training.bases import file_sha256
from lineqa.training.errors import TrainingError
from lineqa.training.parity import Tolerance, parity_report
from lineqa.training.runs import Run, now_iso
from lineqa.training.ultralytics_adapter import export_onnx, reference_predict
from lineqa.vision.detector import IMAGE_INPUT, INPUT_METADATA_KEY, detect
from lineqa.vision.image import load_image
from lineqa.vision.recipe import Recipe
from lineqa.vision.yolo_output import DecodeOptions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Compared well below any recipe's threshold, so that weak detections, which decide borderline verdicts, are
# held to the tolerance too and the comparison has detections to compare even for a young model.
GOLDEN_CONF = 0.01
FP32_TOLERANCE = Tolerance()


def held_out_images(run: Run, count: int) -> list[Path]:
    """Up to ``count`` images of the run's test split (else val), in a fixed order by name hash."""
    data = run.root / "data" / "images"
    for split in ("test", "val"):
        found = [p for p in (data / split).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if found:
            return sorted(found, key=lambda p: hashlib.sha256(str(p.relative_to(data)).encode()).hexdigest())[:count]
    raise TrainingError(f"{run.root}: no test or val images to use as the golden set")


def golden_images(run: Run, folder: Path | None, count: int) -> list[Path]:
    if folder is None:
        return held_out_images(run, count)
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise TrainingError(f"--golden {folder}: no images there")
    return found[:count]


def check_parity(
    weights: Path, onnx: Path, images: list[Path], recipe: Recipe, tolerance: Tolerance = FP32_TOLERANCE
) -> dict[str, Any]:
    """Ultralytics' predict on the weights against the served pipeline on the ONNX file, image by image."""
    model = OnnxModel(onnx)
    spec = model.spec
    options = DecodeOptions(conf_threshold=GOLDEN_CONF, iou_threshold=recipe.iou_threshold)
    exported = [detect([load_image(path)], model.infer, spec, options)[0] for path in images]
    reference = reference_predict(
        weights, images, imgsz=spec.input_hw[0], conf=GOLDEN_CONF, iou=recipe.iou_threshold, rect=False
    )
    return parity_report(
        [p.name for p in images],
        exported,
        reference,
        spec.class_names,
        recipe,
        conf=GOLDEN_CONF,
        tolerance=tolerance,
        nms_iou=recipe.iou_threshold,
    )


def stamp_input_encoding(path: Path, encoding: str) -> None:
    """Record in the ONNX file at ``path`` what its model looks at; an image model's file stays as exported
    (an absent key means the image alone, so models exported before encodings existed read the same)."""
    if encoding == IMAGE_INPUT:
        return
    model = onnx.load(str(path))
    kept = [prop for prop in model.metadata_props if prop.key != INPUT_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=INPUT_METADATA_KEY, value=encoding)
    staging = path.with_suffix(".tmp")
    onnx.save(model, str(staging))
    staging.replace(path)


def export_run(
    run: Run, *, golden: Path | None = None, golden_count: int = 32, recipe: Recipe | None = None
) -> dict[str, Any]:
    """ONNX export plus the parity gate; returns the record's ``export`` entry (``parity.passed`` decides)."""
    record = run.record()
    weights = run.best_weights
    if not weights.is_file():
        raise TrainingError(f"{run.root} has no trained weights yet ({weights})")
    imgsz = int(record["hyperparameters"]["imgsz"])
    onnx = run.root / "export" / "model.onnx"
    onnx.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(export_onnx(weights, imgsz), onnx)
    encoding = str(record.get("input_encoding", IMAGE_INPUT))
    stamp_input_encoding(onnx, encoding)
    images = golden_images(run, golden, golden_count)
    report = check_parity(weights, onnx, images, recipe or default_recipe(run.name))
    (run.root / "export" / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    entry = {
        "onnx": str(onnx),
        "onnx_sha256": file_sha256(onnx),
        "weights_sha256": file_sha256(weights),
        "imgsz": imgsz,
        "input_encoding": encoding,
        "dynamic_batch": True,
        "exported_at": now_iso(),
        "parity": {k: v for k, v in report.items() if k != "images"},
    }
    run.update(export=entry)
    return entry
