"""``lineqa export``: a training run to ONNX (dynamic batch), then the parity gate against its weights.

    lineqa export pcb-20261125-101500                      # golden set: 32 held-out images of the run's dataset
    lineqa export RUN --golden ./reference-parts --recipe acme/pcb-top

Exit status 1 when the exported model differs from its weights beyond the tolerance; the differences are
listed by image in ``<run>/export/parity.json``, and ``lineqa models publish`` refuses the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lineqa.home import default_home, env_default
from lineqa.serving.recipes import find_recipe
from lineqa.training.export import export_run
from lineqa.training.runs import find_run


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("run", help="run name or folder")
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--golden", type=Path, help="folder of golden images (default: held-out images)")
    parser.add_argument("--golden-count", type=int, default=32, help="at most this many golden images (32)")
    parser.add_argument("--db", default=env_default("LINEQA_DB"), help="database URL (default: <home>/lineqa.db)")
    parser.add_argument("--recipe", help="recipe (<tenant>/<recipe>[@N] or a YAML file) whose verdicts must agree")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    run_ = find_run(args.run, home / "runs")
    recipe = find_recipe(args.recipe, home, args.db) if args.recipe else None
    entry = export_run(run_, golden=args.golden, golden_count=args.golden_count, recipe=recipe)
    parity = entry["parity"]
    tol = parity["tolerance"]
    print(f"exported {entry['onnx']}")
    print(
        f"parity on {parity['golden_images']} golden images: {parity['matched_detections']} detections matched, "
        f"min IoU {parity['min_iou']:.5f}, max score difference {parity['max_score_diff']:.5f} "
        f"(tolerance IoU ≥ {tol['min_iou']}, score ± {tol['score_tol']}, conf {tol['conf']})"
    )
    if not parity["matched_detections"]:
        print("PARITY NOT SHOWN: neither model detects anything on the golden images; nothing was compared")
        return 1
    if not parity["passed"]:
        print(f"PARITY FAILED: {parity['differences']} differences, listed in {run_.root / 'export' / 'parity.json'}")
        return 1
    print("parity passed: the run can be published (lineqa models publish)")
    return 0
