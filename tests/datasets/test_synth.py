"""Parts of one design (the demo line's product): reproducible from seeds, alignable with their golden sample,
and labelled in the pixels of the photograph the camera took, not of the part as it was made."""

from __future__ import annotations

import cv2
import numpy as np

from lineqa.datasets.synth import LinePart, PartDesign, design_blank, golden_sample, line_part
from lineqa.vision.perturb import shot_transform
from lineqa.vision.reference import AlignmentLimits, align

DESIGN = PartDesign(seed=5, size=160)  # small: a fast tier


def _painted_mask(part: LinePart, design: PartDesign) -> np.ndarray:
    """Where the defects were painted: the made part against its blank, before any photograph."""
    blank = np.clip(design_blank(design), 0, 255).astype(np.uint8)
    difference = np.abs(part.made.image.astype(np.int16) - blank.astype(np.int16)).max(axis=2)
    return np.asarray(difference > 10)


def test_the_same_seeds_make_the_same_parts_and_golden_sample() -> None:
    first, again = line_part(DESIGN, 3), line_part(DESIGN, 3)
    assert np.array_equal(first.photo.image, again.photo.image) and first.photo.labels == again.photo.labels
    assert first.shot == again.shot
    assert np.array_equal(golden_sample(DESIGN), golden_sample(PartDesign(seed=5, size=160)))
    assert not np.array_equal(line_part(DESIGN, 4).photo.image, first.photo.image)
    assert not np.array_equal(golden_sample(PartDesign(seed=6, size=160)), golden_sample(DESIGN))


def test_parts_share_the_design_and_differ_only_by_their_defects() -> None:
    blank = np.clip(design_blank(DESIGN), 0, 255).astype(np.uint8)
    good = next(p for p in (line_part(DESIGN, seed) for seed in range(40)) if not p.made.labels)
    assert np.array_equal(good.made.image, blank)  # a defect-free part is the blank itself, before the camera


def test_parts_of_one_design_align_with_its_golden_sample() -> None:
    golden, limits = golden_sample(DESIGN), AlignmentLimits()
    for seed in range(6):
        alignment = align(line_part(DESIGN, seed).photo.image, golden, limits)
        assert alignment.aligned, (seed, alignment.reason)
        assert alignment.quality >= limits.min_quality


def test_a_part_of_another_design_does_not_pass_for_this_one() -> None:
    alignment = align(line_part(PartDesign(seed=9, size=160), 0).photo.image, golden_sample(DESIGN))
    assert not alignment.aligned  # another blank's grain and slot: quality 0.56 here, against a minimum of 0.8


def test_a_painted_defect_lies_inside_its_box_moved_with_the_shot() -> None:
    parts = [p for p in (line_part(DESIGN, seed, max_defects=1) for seed in range(12)) if p.made.labels]
    assert len(parts) >= 6  # about one part in six is defect-free
    for part in parts:
        [(class_id, *box)] = part.photo.labels
        assert class_id == part.made.labels[0][0]
        painted = _painted_mask(part, DESIGN)
        assert painted.any()
        # Where the camera saw each painted pixel (the photograph mirrors a defect at the edge into the border
        # the move uncovers: that copy is not the defect, and is left out here).
        size = painted.shape[1], painted.shape[0]
        seen = cv2.warpAffine(painted.astype(np.uint8) * 255, shot_transform(part.shot, *size), size) > 127
        ys, xs = np.nonzero(seen)
        x1, y1, x2, y2 = box
        assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2, (box, xs.min(), xs.max())
