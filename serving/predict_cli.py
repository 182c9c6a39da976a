"""``lineqa predict``: run the serving pipeline on image files, like ``yolo predict``, and print JSON lines.

One line per image: its detections (source-image pixels) with how the recipe counted each, the verdict and
reasons, the model and recipe versions and timings. An image that cannot be read gets a line with an
``error`` and the run goes on; the exit status is then 1. Without ``--recipe`` a default recipe applies: a
detection at confidence 0.5 or more is a defect, one from 0.25 (``yolo predict``'s ``conf``) needs review.

A recipe with a golden sample (``reference:``) needs its image, exactly as the gateway uses it: ``--reference
FILE`` (the very file added with ``lineqa references add``: its SHA-256 must be the recipe's id) or ``--tenant
T`` to read it from the home's reference store. A model trained on references (its ONNX metadata says so)
needs one with every image, whatever the recipe: the recipe's golden sample, else ``--reference FILE``; each
image is aligned to it and the model fed the pair, and an image that cannot be aligned is REVIEW, never PASS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from lineqa.home import default_home
from lineqa.serving.onnx_model import PROVIDERS, OnnxModel
from lineqa.serving.predict import PredictConfig, default_recipe, predict_files
from lineqa.serving.references import references_of
from lineqa.vision.detector import ModelSpec
from lineqa.vision.errors import RecipeError
from lineqa.vision.image import ImageLimits, decode_image
from lineqa.vision.recipe import Recipe, load_recipe
from lineqa.vision.tiling import TilingOptions
from lineqa.vision.yolo_output import DecodeOptions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
PROGRESS_EVERY_S = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of .jpg/.jpeg/.png")
    parser.add_argument("--model", required=True, type=Path, help="an ONNX detection model exported by Ultralytics")
    parser.add_argument("--recipe", type=Path, help="recipe YAML that turns detections into a verdict")
    parser.add_argument("--conf", type=float, help="confidence threshold (default: the recipe's lowest)")
    parser.add_argument("--iou", type=float, help="NMS IoU threshold (default: the recipe's, 0.7)")
    parser.add_argument("--max-det", type=int, default=300, help="most detections per image (default 300)")
    parser.add_argument("--tile", type=int, metavar="PX", help="tile large images into PX windows (SAHI)")
    parser.add_argument("--tile-overlap", type=float, default=0.2, help="tile overlap ratio (default 0.2)")
    parser.add_argument("--device", choices=sorted(PROVIDERS), default="cpu", help="ONNX Runtime device")
    parser.add_argument("--save-dir", type=Path, help="write overlay images (defects drawn) here")
    parser.add_argument("--output", type=Path, help="write JSON lines here instead of standard output")
    parser.add_argument("--max-pixels", type=int, default=ImageLimits().max_pixels, help="largest image accepted")
    golden = parser.add_mutually_exclusive_group()
    golden.add_argument(
        "--reference", type=Path, help="the recipe's golden sample as a file (or a reference model's reference)"
    )
    golden.add_argument("--tenant", help="read the recipe's golden sample from this tenant's references in the home")
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")


def _golden_sample(args: argparse.Namespace, recipe: Recipe, spec: ModelSpec) -> np.ndarray | None:
    """The reference images are compared with, decoded, from where the command line says: the recipe's golden
    sample, refused when it is not the one the recipe names (predict would then judge differently from the
    gateway); for a reference model whose recipe has none, the ``--reference`` file as given. Checked before any
    image is read, so a missing reference costs nothing."""
    if recipe.reference is None:
        if spec.needs_reference:
            if args.reference is None:
                raise RecipeError(
                    f"model {spec.name!r} was trained on images with their reference: give --reference FILE (a good "
                    f"part of the product), or a recipe with a reference: block (--tenant T reads it)"
                )
            return decode_image(_read(args.reference))
        if args.reference or args.tenant:
            raise RecipeError(f"recipe {recipe.id!r} has no reference: block to use a golden sample with")
        return None
    if args.tenant:
        return references_of(args.home or default_home()).image(args.tenant, recipe.reference.image)
    if args.reference is None:
        raise RecipeError(
            f"recipe {recipe.id!r} compares parts with golden sample {recipe.reference.image[:12]}...: give "
            "--reference FILE or --tenant T (its references in the lineqa home)"
        )
    data = _read(args.reference)
    if hashlib.sha256(data).hexdigest() != recipe.reference.image:
        raise RecipeError(f"{args.reference} is not recipe {recipe.id!r}'s golden sample (its SHA-256 differs)")
    return decode_image(data)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _expand(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            yield path


class _Progress:
    """Periodic progress lines on standard error for long runs (silent for a handful of images)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.start = self.last = time.monotonic()
        self.done = 0
        self.stream = stream

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            print(f"predict: {self.done} images, {self.done / (now - self.start):.1f} img/s", file=self.stream)


def run(args: argparse.Namespace) -> int:
    model = OnnxModel(args.model, device=args.device)
    recipe = load_recipe(args.recipe) if args.recipe else default_recipe(model.spec.name)
    tiling = (
        TilingOptions(args.tile, args.tile_overlap)
        if args.tile
        else (recipe.tiling.options() if recipe.tiling else None)
    )
    config = PredictConfig(
        options=DecodeOptions(
            conf_threshold=recipe.min_confidence if args.conf is None else args.conf,
            iou_threshold=recipe.iou_threshold if args.iou is None else args.iou,
            max_det=args.max_det,
        ),
        tiling=tiling,
        limits=ImageLimits(max_pixels=args.max_pixels),
        save_dir=args.save_dir,
        reference=_golden_sample(args, recipe, model.spec),
    )
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    failures = 0
    progress = _Progress()
    try:
        for record in predict_files(_expand(args.images), model, recipe, config):
            failures += "error" in record
            print(json.dumps(record), file=out, flush=True)
            progress.step()
    finally:
        if out is not sys.stdout:
            out.close()
    if failures:
        print(f"lineqa predict: {failures} image(s) could not be read; see their 'error' lines", file=sys.stderr)
    return 1 if failures else 0
