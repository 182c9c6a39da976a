"""``lineqa evaluate``: a model on a dataset split through the serving code, with pictures and plant metrics.

    lineqa evaluate --run pcb-20261125-101500                          # its dataset's test split (else val)
    lineqa evaluate --model pcb-defects@3 --dataset acme/pcb@4 --split test --recipe acme/pcb-top
    lineqa evaluate --model ./best.onnx --dataset acme/pcb@4 --out ./eval

Writes ``metrics.json`` (mAP50, mAP50-95, per-class AP, the confusion matrix, escape and false-reject rates at
the recipe's operating point), ``pr_curves.png``, ``confusion_matrix.png`` and ``operating_curve.png`` (both
rates against the FAIL threshold). The mAP is recomputed by
pycocotools on the same predictions; a disagreement beyond rounding is an error, not a footnote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from lineqa.content_store import ContentStore
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.versions import load_version
from lineqa.db import database_url
from lineqa.home import default_home
from lineqa.progress import ProgressBar
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.predict import default_recipe
from lineqa.serving.recipes import find_recipe
from lineqa.training.coco_check import coco_map
from lineqa.training.errors import TrainingError
from lineqa.training.evaluation import Evaluation, evaluate
from lineqa.training.plots import plot_confusion, plot_operating_curve, plot_pr_curves
from lineqa.training.runs import Run, find_run

COCO_AGREEMENT = 2e-3  # rounding of box coordinates and tie order; anything larger is a bug


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--db", help="dataset catalog database URL (default: SQLite <home>/lineqa.db)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="a training run (its exported model and its dataset)")
    which.add_argument("--model", help="an ONNX file, or a registry model NAME[@VERSION]")
    parser.add_argument(
        "--dataset", help="<tenant>/<name>@<version>, pool@<version> or cluster/<name>@<version> (default: the run's)"
    )
    parser.add_argument("--split", help="split to evaluate on (default: test, else val)")
    parser.add_argument(
        "--recipe",
        help="recipe (<tenant>/<recipe>[@N] or a YAML file) for the inspection metrics (default: 0.5 "
        "fail, 0.25 review)",
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <run>/eval/<split>, else ./eval)")


def _model(args: argparse.Namespace, home: Path, run: Run | None) -> Path:
    if run is not None:
        onnx = Path(run.record().get("export", {}).get("onnx", run.root / "export" / "model.onnx"))
        if not onnx.is_file():
            from lineqa.training.export import export_run  # exporting needs torch; evaluating does not

            onnx = Path(export_run(run)["onnx"])
        return onnx
    path = Path(args.model).expanduser()
    if path.suffix == ".onnx":
        return path
    name, _, version = args.model.partition("@")
    try:
        return ModelRepository(home / "models").version(name, int(version) if version else None).model_file
    except (ModelRepositoryError, ValueError) as exc:
        raise TrainingError(f"--model {args.model!r} is neither an .onnx file nor a registry model: {exc}") from None


def _report(evaluation: Evaluation, title: str, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    summary = evaluation.summary()
    sizes = [image.size for image in evaluation.images]
    coco50, coco50_95 = coco_map([i.boxes for i in evaluation.images], sizes, len(evaluation.classes))
    gaps = (abs(coco50 - summary["mAP50"]), abs(coco50_95 - summary["mAP50-95"]))
    agrees = max(gaps) <= COCO_AGREEMENT
    summary["coco_check"] = {"mAP50": round(coco50, 5), "mAP50-95": round(coco50_95, 5), "agrees": agrees}
    labels = [*evaluation.classes, "background"]
    summary["confusion_matrix"] = {"labels": labels, "rows_predicted_columns_true": evaluation.confusion().tolist()}
    plot_pr_curves(evaluation.curves(), evaluation.classes, out / "pr_curves.png", title=title)
    plot_confusion(evaluation.confusion(), evaluation.classes, out / "confusion_matrix.png", title=title)
    thresholds = np.round(np.arange(0.05, 0.96, 0.01), 2)
    escapes, rejects = evaluation.operating_curve(thresholds)
    fail_at = evaluation.recipe.defaults.fail_confidence
    plot_operating_curve(thresholds, escapes, rejects, fail_at, out / "operating_curve.png", title=title)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _print(summary: dict[str, Any], out: Path) -> None:
    print(f"{summary['images']} images")
    print(f"{'class':<18}{'instances':>10}{'AP50':>9}{'AP50-95':>10}")
    for name, row in summary["per_class"].items():
        ap50, ap = (f"{v:.4f}" if v is not None else "-" for v in (row["AP50"], row["AP50-95"]))
        print(f"{name:<18}{row['instances']:>10}{ap50:>9}{ap:>10}")
    coco = summary["coco_check"]
    instances = sum(row["instances"] for row in summary["per_class"].values())
    total = f"{'all':<18}{instances:>10}{summary['mAP50']:>9.4f}{summary['mAP50-95']:>10.4f}"
    print(f"{total}   (pycocotools: {coco['mAP50']:.4f} / {coco['mAP50-95']:.4f})")
    inspection = summary["inspection"]
    point = inspection["operating_point"]
    print(
        f"at recipe {inspection['recipe']['id']} (fail ≥ {point['fail_confidence']}, review ≥ "
        f"{point['review_confidence']}): escapes {inspection['escapes']}/{inspection['defective_parts']} "
        f"defective parts, false rejects {inspection['false_rejects']}/{inspection['good_parts']} good parts, "
        f"{inspection['reviews']} sent to review"
    )
    print(f"results in {out}: metrics.json, pr_curves.png, confusion_matrix.png, operating_curve.png")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    run_ = find_run(args.run, home / "runs") if args.run else None
    ref = args.dataset or (run_.record()["dataset"]["ref"] if run_ else None)
    if not ref:
        raise TrainingError("give --dataset <tenant>/<name>@<version> to evaluate --model on")
    model_file = _model(args, home, run_)
    engine = open_catalog_database(database_url(home, args.db))
    try:
        manifest, images = load_version(engine, ContentStore(home / "images"), ref)
    finally:
        engine.dispose()
    splits = {image.split for image in images}
    split = args.split or ("test" if "test" in splits else "val")
    chosen = [image for image in images if image.split == split]
    if not chosen:
        raise TrainingError(f"{ref} has no {split!r} images (its splits: {sorted(s or 'none' for s in splits)})")
    model = OnnxModel(model_file)
    recipe = find_recipe(args.recipe, home, args.db) if args.recipe else default_recipe(model.spec.name)
    evaluation = evaluate(
        model, chosen, tuple(manifest.classes), recipe, progress=ProgressBar(f"evaluating on {len(chosen)} images")
    )
    out = args.out or (run_.root / "eval" / split if run_ else Path("eval"))
    summary = _report(evaluation, f"{model_file.name} on {ref} {split}", out)
    _print(summary, out)
    if run_ is not None:
        keep = {k: v for k, v in summary.items() if k != "confusion_matrix"}
        run_.update(evaluation={**keep, "dataset": ref, "split": split, "model": str(model_file)})
    if not summary["coco_check"]["agrees"]:
        raise TrainingError("our mAP and pycocotools' disagree: the evaluation cannot be trusted (please report)")
    return 0
