"""The demo's golden sample on parts it never judges: what its anomaly settings flag, with no server and no model.

    python benchmarks/bench_demo_golden.py [--parts 200] [--first-seed 2000]

Parts ``first-seed`` .. ``first-seed + parts - 1`` of the demo's design (lineqa.datasets.synth.line_part: the
design's blank, painted defects, then a seeded re-photograph: up to 4 px shift and 0.5 degrees, +-10 % light,
mild blur and noise) are each aligned with the demo's golden sample and searched for anomaly regions with the
demo recipe's own alignment limits and anomaly settings (lineqa.vision.golden.regions_of, as the gateway does).
The demo's line uses parts from 1,000,000 on and the settings were tuned on parts 0-149, so the default seeds are
neither. Printed:

- parts not aligned (each a REVIEW on the line, never a PASS);
- good parts with any anomaly region (the golden sample's false flags);
- defect boxes overlapped by some anomaly region (what the golden sample sees of the labelled defects);
- regions on defective parts that overlap no defect box.
"""

from __future__ import annotations

import argparse

import cv2

from lineqa.datasets.synth import golden_sample, line_part
from lineqa.demo import DESIGN, recipe_yaml
from lineqa.vision.golden import regions_of
from lineqa.vision.recipe import parse_recipe
from lineqa.vision.reference import AnomalyRegion, align


def _overlaps(region: AnomalyRegion, box: tuple[int, ...]) -> bool:
    x1, y1, x2, y2 = box
    return region.x1 < x2 and region.x2 > x1 and region.y1 < y2 and region.y2 > y1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=2000)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rule = parse_recipe(recipe_yaml("f" * 64)).reference
    if rule is None:
        raise SystemExit("the demo recipe has no reference: block")
    golden = golden_sample(DESIGN)
    good = good_flagged = boxes = boxes_hit = stray = unaligned = 0
    for seed in range(args.first_seed, args.first_seed + args.parts):
        part = line_part(DESIGN, seed).photo
        alignment = align(part.image, golden, rule.alignment.core())
        unaligned += not alignment.aligned
        regions = regions_of(alignment, rule)
        labelled = [tuple(label[1:]) for label in part.labels]
        if not labelled:
            good += 1
            good_flagged += bool(regions)
        boxes += len(labelled)
        boxes_hit += sum(any(_overlaps(r, box) for r in regions) for box in labelled)
        stray += sum(bool(labelled) and not any(_overlaps(r, box) for box in labelled) for r in regions)
    last = args.first_seed + args.parts - 1
    print(f"demo design {DESIGN.seed}, parts {args.first_seed}-{last}, anomaly settings: {rule.anomaly}")
    print(f"parts not aligned: {unaligned}/{args.parts}")
    print(f"good parts with an anomaly region: {good_flagged}/{good} ({good_flagged / max(good, 1):.1%})")
    print(f"defect boxes overlapped by an anomaly region: {boxes_hit}/{boxes} ({boxes_hit / max(boxes, 1):.1%})")
    print(f"regions on defective parts outside every defect box: {stray}")


if __name__ == "__main__":
    main()
