"""``lineqa demo``: the whole inspection path on a fresh machine, with nothing but this repository.

1. generate a synthetic training set of brushed-metal parts with labelled scratches, dents and stains;
2. train a YOLO11n detector from Ultralytics' model YAML (no pretrained weights exist offline) and export
   it to ONNX;
3. write a product recipe;
4. judge a batch of new parts from "the line" with the serving pipeline (the same vision code the gateway
   runs) and print each verdict, with overlays and JSON lines saved.

Everything lives under ``<lineqa home>/demo``; a second run reuses the trained model and takes seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import cv2

from datasets.synth import CLASSES, Surface, generate_part, write_yolo_dataset
from lineqa.home import default_home
from serving.onnx_model import OnnxModel
from serving.predict import PredictConfig, predict_files
from training.ultralytics_adapter import TrainSpec, export_onnx, train
from vision.recipe import load_recipe
from vision.yolo_output import DecodeOptions

MODEL_NAME = "metal-defects"
IMGSZ = 320
LINE_SEED = 1_000_000  # parts "from the line" are never in the training set
RECIPE = f"""\
# Brushed-metal bracket, camera at 0.05 mm per pixel.
id: bracket-a
description: demo recipe for synthetic brushed-metal parts
model: {{name: {MODEL_NAME}}}
mm_per_px: 0.05
defaults: {{fail_confidence: 0.5, review_confidence: 0.25}}
classes:
  stain: {{min_area_mm2: 2.0}}   # small stains wipe off
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--parts", type=int, default=24, help="parts to send down the line (default 24)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs for the demo model (default 30)")
    parser.add_argument("--train-images", type=int, default=240, help="synthetic training images (default 240)")
    parser.add_argument("--retrain", action="store_true", help="train the demo model again")


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/4] {text}", flush=True)


def _prepare_model(demo: Path, args: argparse.Namespace) -> Path:
    model_path = demo / "models" / f"{MODEL_NAME}.onnx"
    if model_path.is_file() and not args.retrain:
        _step(2, f"model: reusing {model_path} (--retrain to train it again)")
        return model_path
    data_yaml = demo / "dataset" / "data.yaml"
    if not data_yaml.is_file() or args.retrain:
        _step(1, f"dataset: generating {args.train_images} synthetic metal parts with labelled defects")
        shutil.rmtree(demo / "dataset", ignore_errors=True)
        write_yolo_dataset(demo / "dataset", Surface.METAL, train=args.train_images, val=args.train_images // 5)
    else:
        _step(1, f"dataset: reusing {data_yaml}")
    _step(2, f"model: training YOLO11n from its YAML for {args.epochs} epochs on the CPU (progress below)")
    spec = TrainSpec(
        model="yolo11n.yaml",
        data_yaml=data_yaml,
        run_dir=demo / "runs" / MODEL_NAME,
        epochs=args.epochs,
        imgsz=IMGSZ,
        batch=8,
        workers=2,
        # An optimizer step per batch (nbs = batch): from scratch, on few images, the default of one step per
        # 64 images learns too slowly. No vertical flips or mosaics are needed on a fixed camera.
        extra={"nbs": 8, "optimizer": "AdamW", "lr0": 0.003, "mosaic": 0.5, "close_mosaic": 5},
    )
    weights = train(spec)
    onnx = export_onnx(weights, IMGSZ)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, model_path)
    return model_path


def _line_parts(folder: Path, count: int) -> dict[Path, set[str]]:
    """Write ``count`` new parts; return each file with the defect classes it truly has."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index in range(count):
        part = generate_part(Surface.METAL, LINE_SEED + index, IMGSZ)
        path = folder / f"part-{index:04d}.png"
        cv2.imwrite(str(path), part.image)
        truth[path] = {CLASSES[Surface.METAL][label[0]] for label in part.labels}
    return truth


def run(args: argparse.Namespace) -> int:
    demo = (args.home or default_home()) / "demo"
    started = time.monotonic()
    model_path = _prepare_model(demo, args)
    recipe_path = demo / "recipe.yaml"
    _step(3, f"recipe: {recipe_path}")
    recipe_path.write_text(RECIPE)
    recipe = load_recipe(recipe_path)
    _step(4, f"line: judging {args.parts} new parts with the serving pipeline (ONNX Runtime)")
    truth = _line_parts(demo / "line", args.parts)
    model = OnnxModel(model_path)
    config = PredictConfig(
        options=DecodeOptions(conf_threshold=recipe.min_confidence, iou_threshold=recipe.iou_threshold),
        save_dir=demo / "overlays",
    )
    verdicts: Counter[str] = Counter()
    caught = missed = false_rejects = 0
    results_path = demo / "results.jsonl"
    with results_path.open("w", encoding="utf-8") as results:
        for record in predict_files(truth, model, recipe, config):
            results.write(json.dumps(record) + "\n")
            verdict, defective = record["verdict"], bool(truth[Path(record["image"])])
            verdicts[verdict] += 1
            caught += defective and verdict != "PASS"
            missed += defective and verdict == "PASS"
            false_rejects += not defective and verdict == "FAIL"
            real = ", ".join(sorted(truth[Path(record["image"])])) or "none"
            why = record["reasons"][0] if record["reasons"] else ""
            print(f"  {Path(record['image']).name}  {verdict:<6}  {why:<52}  truly: {real}", flush=True)
    defective_parts = caught + missed
    print(
        f"\nverdicts: {dict(verdicts)}; defective parts flagged: {caught}/{defective_parts}, "
        f"good parts failed: {false_rejects}/{args.parts - defective_parts}"
    )
    print(f"results: {results_path}\noverlays: {demo / 'overlays'}\nmodel: {model_path}  recipe: {recipe_path}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0
