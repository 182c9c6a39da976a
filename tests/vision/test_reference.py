"""The golden-sample step: alignment, brightness matching, the model input and zero-label anomaly regions.

Synthetic boards (tracks and pads drawn with OpenCV) are moved by known amounts, so what alignment must undo is
known exactly; the real DeepPCB pairs check that the same defaults hold on real boards.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.vision.errors import ImageError
from lineqa.vision.perturb import Shot, photograph, rephotograph, shot_transform
from lineqa.vision.reference import (
    ENCODING,
    AlignmentLimits,
    AnomalyRegion,
    AnomalySettings,
    align,
    anomaly_regions,
    model_input,
    reference_input,
    unexplained,
)
from tests.helpers.boards import DEFECT, SIZE, board, overlaps, with_defect
from tests.helpers.deeppcb import deeppcb_pairs, read_boxes


def corner_error_px(estimated: np.ndarray, true: np.ndarray, size: int = SIZE) -> float:
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float).T
    return float(np.abs(estimated @ corners - true @ corners).max())


@pytest.mark.parametrize(
    ("dx", "dy", "rotation"), [(3.0, -2.0, 0.4), (-4.0, 1.5, -0.5), (0.3, 0.2, 0.05), (11.0, -7.0, 1.5)]
)
def test_a_moved_board_is_aligned_back(dx: float, dy: float, rotation: float) -> None:
    reference = board()
    shot = Shot(dx_px=dx, dy_px=dy, rotation_deg=rotation)
    aligned = align(photograph(reference, shot), reference)
    assert aligned.aligned, aligned.reason
    assert aligned.reason == ""
    assert aligned.quality > 0.95
    assert corner_error_px(aligned.transform, shot_transform(shot, SIZE, SIZE)) < 1.0
    assert aligned.shift_px == pytest.approx((dx, dy), abs=0.5)
    assert aligned.rotation_deg == pytest.approx(rotation, abs=0.1)
    assert aligned.scale == pytest.approx(1.0, abs=0.01)


def test_a_part_far_off_is_found_and_refused_only_by_the_shift_limit() -> None:
    reference = board()
    shot = Shot(dx_px=-40.0, dy_px=25.0)
    frame = photograph(reference, shot)
    found = align(frame, reference, AlignmentLimits(max_shift_px=80.0))
    assert found.aligned, found.reason
    assert corner_error_px(found.transform, shot_transform(shot, SIZE, SIZE)) < 1.0
    refused = align(frame, reference)
    assert not refused.aligned
    assert "shifted 47.2 px" in refused.reason


def test_a_realistic_shot_is_aligned_back_under_blur_noise_and_light() -> None:
    reference = board()
    shot = Shot(dx_px=-2.5, dy_px=3.0, rotation_deg=0.3, brightness=1.1, contrast=0.9, blur_sigma_px=0.8, noise_sigma=4)
    aligned = align(photograph(reference, shot, np.random.default_rng(1)), reference)
    assert aligned.aligned, aligned.reason
    assert corner_error_px(aligned.transform, shot_transform(shot, SIZE, SIZE)) < 1.0


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(np.random.default_rng(7).integers(0, 256, (SIZE, SIZE), dtype=np.uint8), id="noise"),
        pytest.param(board(seed=5), id="another-board"),
        pytest.param(np.full((SIZE, SIZE), 128, np.uint8), id="blank"),
    ],
)
def test_an_unrelated_frame_is_not_aligned_and_says_why(frame: np.ndarray) -> None:
    aligned = align(frame, board())
    assert not aligned.aligned
    assert "quality" in aligned.reason or "no alignment" in aligned.reason
    assert aligned.quality < AlignmentLimits().min_quality


@pytest.mark.parametrize(
    ("shot", "limits", "words"),
    [
        (Shot(dx_px=10.0, dy_px=0.0), AlignmentLimits(max_shift_px=6.0), "shifted 10.0 px"),
        (Shot(rotation_deg=1.5), AlignmentLimits(max_rotation_deg=1.0), "rotated 1.50 degrees"),
        (Shot(dx_px=1.0, blur_sigma_px=1.5), AlignmentLimits(min_quality=1.0), "quality"),
    ],
)
def test_limits_decide_whether_an_alignment_is_trusted(shot: Shot, limits: AlignmentLimits, words: str) -> None:
    reference = board()
    frame = photograph(reference, shot)
    assert align(frame, reference).aligned
    refused = align(frame, reference, limits)
    assert not refused.aligned
    assert words in refused.reason


def test_a_shift_along_stripes_is_not_held_against_the_part() -> None:
    stripes = np.full((SIZE, SIZE), 40, np.uint8)
    for x in range(20, SIZE, 60):
        stripes[:, x : x + 25] = 200
    aligned = align(photograph(stripes, Shot(dx_px=1.0, dy_px=30.0)), stripes, AlignmentLimits(max_shift_px=8.0))
    assert aligned.aligned, aligned.reason
    assert anomaly_regions(aligned) == []


@pytest.mark.parametrize("seed", range(4))
def test_a_defect_is_one_region_and_a_good_copy_none(seed: int) -> None:
    reference = board()
    rng = np.random.default_rng(seed)
    good = align(rephotograph(reference, rng), reference)
    defective = align(rephotograph(with_defect(reference), rng), reference)
    assert good.aligned and defective.aligned
    assert anomaly_regions(good) == []
    regions = anomaly_regions(defective)
    assert len(regions) == 1
    margin = 5  # the re-photograph moved the defect by up to 4 px
    x1, y1, x2, y2 = DEFECT
    assert overlaps(regions[0], (x1 - margin, y1 - margin, x2 + margin, y2 + margin))
    assert regions[0].area_px >= 80
    assert regions[0].contrast > 100


def test_a_defect_smaller_than_the_minimum_area_is_no_region() -> None:
    reference = board()
    aligned = align(with_defect(reference), reference)
    assert len(anomaly_regions(aligned)) == 1
    assert anomaly_regions(aligned, AnomalySettings(min_area_px=500)) == []


@pytest.mark.parametrize(("brightness", "contrast"), [(0.6, 1.0), (1.0, 0.5), (0.7, 0.8), (0.5, 1.1)])
def test_a_change_of_light_alone_is_no_region(brightness: float, contrast: float) -> None:
    reference = board()
    frame = photograph(reference, Shot(brightness=brightness, contrast=contrast))
    assert cv2.absdiff(frame, reference).max() > AnomalySettings().pixel_threshold  # would show, unmatched
    aligned = align(frame, reference)
    assert aligned.aligned, aligned.reason
    assert anomaly_regions(aligned) == []
    assert float(cv2.absdiff(aligned.frame, aligned.reference).mean()) < 3.0


def test_the_border_the_warp_leaves_empty_is_masked() -> None:
    reference = board()
    frame = photograph(reference, Shot(dx_px=12.0, dy_px=0.0))  # the frame's left 12 px have no reference
    aligned = align(frame, reference)
    assert aligned.aligned, aligned.reason
    assert not aligned.valid[:, :12].any()
    assert aligned.valid[:, 16:].all()
    np.testing.assert_array_equal(aligned.reference[~aligned.valid], aligned.frame[~aligned.valid])
    encoded = reference_input(aligned)
    assert encoded[:, :12, 2].max() == 0
    assert anomaly_regions(aligned) == []


def test_the_model_input_is_frame_reference_difference_in_array_order() -> None:
    reference = board()
    frame_bgr = cv2.cvtColor(with_defect(reference), cv2.COLOR_GRAY2BGR)
    frame_bgr[..., 2] = np.clip(frame_bgr[..., 2].astype(int) + 20, 0, 255).astype(np.uint8)  # a colour cast
    aligned = align(frame_bgr, reference)
    encoded = reference_input(aligned)
    assert ENCODING == "frame-reference-diff/1"
    assert encoded.shape == (SIZE, SIZE, 3)
    assert encoded.dtype == np.uint8
    assert encoded.flags.c_contiguous
    np.testing.assert_array_equal(encoded[..., 0], cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY))
    np.testing.assert_array_equal(encoded[..., 1], aligned.reference)
    np.testing.assert_array_equal(encoded[..., 2], cv2.absdiff(encoded[..., 0], encoded[..., 1]))
    x1, y1, x2, y2 = DEFECT
    assert encoded[y1:y2, x1:x2, 2].max() > 100  # the defect is in the difference channel
    assert np.median(encoded[..., 2]) <= 2


def test_a_training_pair_outside_the_limits_keeps_its_best_alignment() -> None:
    reference = board()
    moved = photograph(with_defect(reference), Shot(9.0, -6.0, 1.0, 1.0, 1.0, 0.0, 0.0))
    strict = AlignmentLimits(max_shift_px=2.0)
    assert not align(moved, reference, strict).aligned  # at inspection time: REVIEW
    encoded = model_input(moved, reference, strict)  # for training: still the aligned pair, not an error
    np.testing.assert_array_equal(encoded, reference_input(align(moved, reference)))
    assert np.median(encoded[..., 2]) <= 2  # aligned: only the defect differs


def test_a_reference_of_another_size_is_stretched_to_the_frame() -> None:
    reference = board(size=2 * SIZE)
    frame = cv2.resize(reference, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    aligned = align(frame, reference)
    assert aligned.aligned, aligned.reason
    assert aligned.reference.shape == (SIZE, SIZE)
    assert reference_input(aligned).shape == (SIZE, SIZE, 3)
    assert aligned.scale == pytest.approx(1.0, abs=0.01)


def test_alignment_arrays_are_read_only() -> None:
    aligned = align(board(), board())
    with pytest.raises(ValueError, match="read-only"):
        aligned.reference[0, 0] = 0


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(np.zeros((32, 32), np.float32), id="float"),
        pytest.param(np.zeros((32, 32, 4), np.uint8), id="four-channels"),
        pytest.param(np.zeros((32,), np.uint8), id="one-dimension"),
    ],
)
def test_images_that_are_no_8_bit_picture_are_refused(image: np.ndarray) -> None:
    with pytest.raises(ImageError, match="expected"):
        align(image, board())
    with pytest.raises(ImageError, match="expected"):
        align(board(), image)


@pytest.mark.parametrize(
    ("kwargs", "settings"),
    [
        ({"min_quality": 1.5}, AlignmentLimits),
        ({"max_shift_px": -1.0}, AlignmentLimits),
        ({"min_area_px": 0}, AnomalySettings),
        ({"pixel_threshold": 0}, AnomalySettings),
    ],
)
def test_settings_out_of_range_are_refused(kwargs: dict[str, float], settings: type) -> None:
    with pytest.raises(ValueError, match="expected"):
        settings(**kwargs)


def test_unexplained_keeps_regions_no_box_covers() -> None:
    inside = AnomalyRegion(10, 10, 20, 20, 100, 120.0)
    half = AnomalyRegion(50, 50, 60, 60, 100, 120.0)
    apart = AnomalyRegion(100, 100, 110, 110, 100, 120.0)
    boxes = np.array([[0, 0, 40, 40], [55, 50, 80, 60]], np.float32)  # covers 'inside' fully, 'half' by half
    assert unexplained([inside, half, apart], boxes, min_overlap=0.5) == [apart]
    assert unexplained([inside, half, apart], boxes, min_overlap=0.6) == [half, apart]
    assert unexplained([inside, apart], np.zeros((0, 4))) == [inside, apart]


def test_rephotograph_is_seeded_and_keeps_the_image_kind() -> None:
    grey, colour = board(), cv2.cvtColor(board(), cv2.COLOR_GRAY2BGR)
    first = rephotograph(grey, np.random.default_rng(3))
    np.testing.assert_array_equal(first, rephotograph(grey, np.random.default_rng(3)))
    assert not np.array_equal(first, rephotograph(grey, np.random.default_rng(4)))
    assert not np.array_equal(first, grey)
    assert rephotograph(colour, np.random.default_rng(3)).shape == colour.shape
    assert first.dtype == np.uint8


def test_real_deeppcb_pairs_align_and_defects_stand_out(deeppcb_root: Path) -> None:
    """Ten boards across the groups: every re-photographed template aligns back with no region, and most
    annotated defects on the re-photographed defective board get one."""
    rng = np.random.default_rng(0)
    caught = total = 0
    for image, annotation in deeppcb_pairs(deeppcb_root)[5::100]:
        template = cv2.imread(str(image.with_name(image.name.replace("_test", "_temp"))))
        good = align(rephotograph(template, rng), template)
        assert good.aligned, f"{image.name}: {good.reason}"
        assert anomaly_regions(good) == [], image.name
        defective = align(rephotograph(cv2.imread(str(image)), rng), template)
        assert defective.aligned, f"{image.name}: {defective.reason}"
        regions = anomaly_regions(defective)
        for _, *box in read_boxes(annotation):
            total += 1
            caught += any(overlaps(region, tuple(box)) for region in regions)
    assert total > 40
    assert caught / total >= 0.9, f"{caught} of {total} defect boxes caught"
