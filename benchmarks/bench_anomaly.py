"""Zero-label anomaly flagging on DeepPCB: golden-sample differences alone, no detector.

    python benchmarks/bench_anomaly.py [--root ../shared/datasets/deeppcb/PCBData] [--limit N] [--seed S]

For every board listed in the DeepPCB folder (``*_test.jpg`` with its template ``*_temp.jpg``), two frames are
made with the same seeded re-photograph perturbation (lineqa.vision.perturb: shift up to 4 px, rotation up to
0.5 degrees, brightness and contrast +-10 %, mild blur and noise): the defective board, and the template itself
(a good board photographed again). Each is aligned back to the untouched template and its anomaly regions are
found with the default AnomalySettings. Printed:

- defect boxes caught: annotated boxes that some region overlaps (goal >= 90 %);
- good boards flagged: perturbed templates with any region, or not aligned (goal <= 5 %);
- alignment failures, for defective and good boards apart (a failure is a REVIEW, never a PASS);
- defective boards with a region outside every annotated box: differences between DeepPCB's board and template
  that nobody labelled (binarisation, real misregistration) -- what a real re-photographed good board would
  show, so the honest false-flag figure next to the synthetic one;
- mean milliseconds per frame for align and for anomaly_regions (one OpenCV thread).

The default AnomalySettings were tuned on every tenth board (trainval.txt order, seed 0); the figures here are
over all boards given (``--limit`` takes the first N), so they include the tuning tenth.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lineqa.datasets.formats.deeppcb import read_deeppcb
from lineqa.vision.image import load_image
from lineqa.vision.perturb import rephotograph
from lineqa.vision.reference import Alignment, AnomalyRegion, align, anomaly_regions

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Tally:
    boxes: int = 0
    caught: int = 0
    boards: int = 0
    good_flagged: int = 0
    defective_not_aligned: int = 0
    good_not_aligned: int = 0
    defective_with_unlabelled: int = 0
    align_s: float = 0.0
    anomaly_s: float = 0.0


def overlaps(region: AnomalyRegion, box: tuple[float, float, float, float]) -> bool:
    x1, y1, x2, y2 = box
    return region.x1 < x2 and region.x2 > x1 and region.y1 < y2 and region.y2 > y1


def judge(frame: np.ndarray, template: np.ndarray, tally: Tally) -> tuple[Alignment, list[AnomalyRegion]]:
    start = time.perf_counter()
    aligned = align(frame, template)
    middle = time.perf_counter()
    regions = anomaly_regions(aligned)
    tally.align_s += middle - start
    tally.anomaly_s += time.perf_counter() - middle
    return aligned, regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO.parent / "shared/datasets/deeppcb/PCBData")
    parser.add_argument("--limit", type=int, default=None, help="only the first N boards (trainval.txt order)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.root.is_dir():
        raise SystemExit(f"DeepPCB not found at {args.root} (see ../shared/datasets/README.md)")

    cv2.setNumThreads(1)
    boards = read_deeppcb(args.root).images[: args.limit]
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    for index, board in enumerate(boards, 1):
        template = load_image(board.path.with_name(board.path.name.replace("_test.jpg", "_temp.jpg")))
        boxes = [(box.x1, box.y1, box.x2, box.y2) for box in board.boxes]
        defective, regions = judge(rephotograph(load_image(board.path), rng), template, tally)
        good, good_regions = judge(rephotograph(template, rng), template, tally)
        tally.boards += 1
        tally.boxes += len(boxes)
        tally.caught += sum(any(overlaps(region, box) for region in regions) for box in boxes)
        tally.defective_not_aligned += not defective.aligned
        tally.good_not_aligned += not good.aligned
        tally.good_flagged += bool(good_regions) or not good.aligned
        tally.defective_with_unlabelled += any(not any(overlaps(r, box) for box in boxes) for r in regions)
        if not (defective.aligned and good.aligned):
            print(f"\n{board.name}: {defective.reason or good.reason}", file=sys.stderr)
        if index % 25 == 0 or index == len(boards):
            print(f"\r{index}/{len(boards)} boards", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    frames = 2 * tally.boards
    print(f"DeepPCB boards: {tally.boards} (seed {args.seed}), defect boxes: {tally.boxes}")
    print(f"defect boxes caught:            {tally.caught / tally.boxes:7.1%}  (goal >= 90 %)")
    print(f"good boards flagged:            {tally.good_flagged / tally.boards:7.1%}  (goal <= 5 %)")
    print(f"alignment failures, defective:  {tally.defective_not_aligned:4d}")
    print(f"alignment failures, good:       {tally.good_not_aligned:4d}")
    print(f"defective boards with a region outside every box: {tally.defective_with_unlabelled / tally.boards:.1%}")
    align_ms, anomaly_ms = 1e3 * tally.align_s / frames, 1e3 * tally.anomaly_s / frames
    print(f"mean ms per board image: align {align_ms:.1f}, anomaly {anomaly_ms:.1f}")


if __name__ == "__main__":
    main()
