"""Probing image files and the validation report: every kind of issue on small synthetic datasets."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.datasets.probe import (
    NEAR_DUPLICATE_BITS,
    hamming,
    near_duplicate_pairs,
    probe_file,
    probe_files,
    probe_image,
    probe_images,
)
from lineqa.datasets.synth import Surface, generate_part
from lineqa.datasets.validate import IssueKind, Severity, ValidationReport, render_text, validate
from lineqa.vision.image import ImageLimits

CLASSES = ("scratch", "dent", "stain")
SIZE = 128


def part(seed: int) -> np.ndarray:
    return generate_part(Surface.METAL, seed, size=SIZE).image


def write(path: Path, image: np.ndarray, quality: int = 95) -> Path:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix == ".jpg" else []
    assert cv2.imwrite(str(path), image, params)
    return path


def labelled(path: Path, *boxes: Box, **kwargs: object) -> LabelledImage:
    return LabelledImage(path.name, path, tuple(boxes), **kwargs)  # type: ignore[arg-type]


def check(images: list[LabelledImage], **kwargs: object) -> ValidationReport:
    return validate(images, probe_images(images), CLASSES, **kwargs)  # type: ignore[arg-type]


def box(x1: float, y1: float, x2: float, y2: float, name: str = "scratch") -> Box:
    return Box(name, x1, y1, x2, y2)


# --- probe ---


def test_probe_reads_hash_size_channels_and_perceptual_hash(tmp_path: Path) -> None:
    colour = write(tmp_path / "colour.png", part(1))
    gray = write(tmp_path / "gray.png", cv2.cvtColor(part(2), cv2.COLOR_BGR2GRAY))
    facts = probe_file(colour)
    assert facts.error is None
    assert facts.sha256 == hashlib.sha256(colour.read_bytes()).hexdigest()
    assert (facts.width, facts.height, facts.channels, facts.size_bytes) == (SIZE, SIZE, 3, colour.stat().st_size)
    assert facts.phash is not None and 0 <= facts.phash < 2**64
    assert probe_file(gray).channels == 1
    assert probe_image(colour.read_bytes()) == facts


def test_probe_reports_refused_images_without_raising(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jpg", part(1)).read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.jpg").write_bytes(b"not an image at all")
    paths = [tmp_path / name for name in ("truncated.jpg", "text.jpg", "absent.jpg")]
    truncated, text, absent = probe_files(paths)
    assert truncated.error is not None and "truncated" in truncated.error and truncated.phash is None
    assert text.error is not None and "unsupported image format" in text.error
    assert absent.error is not None and absent.sha256 is None and "cannot read" in absent.error
    too_many_pixels = probe_image(good, ImageLimits(max_pixels=SIZE * SIZE - 1))
    assert too_many_pixels.error is not None and "over the limit" in too_many_pixels.error
    too_many_bytes = probe_file(tmp_path / "good.jpg", ImageLimits(max_bytes=100))
    assert too_many_bytes.error is not None and too_many_bytes.sha256 == hashlib.sha256(good).hexdigest()


def test_probe_files_keeps_order_and_reports_progress(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"{i}.png", part(i)) for i in range(5)]
    calls: list[tuple[int, int]] = []
    facts = probe_files(paths, progress=lambda done, total: calls.append((done, total)), workers=3)
    assert calls == [(i, 5) for i in range(1, 6)]
    assert [f.sha256 for f in facts] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_perceptual_hash_survives_reencoding_and_brightness_but_tells_parts_apart(tmp_path: Path) -> None:
    reencoded, brighter, hashes = [], [], []
    for seed in range(12):
        image = part(seed)
        original = probe_file(write(tmp_path / f"{seed}.jpg", image, quality=95)).phash or 0
        hashes.append(original)
        reencoded.append(hamming(original, probe_file(write(tmp_path / "q.jpg", image, quality=85)).phash or 0))
        brighter.append(hamming(original, probe_file(write(tmp_path / "b.jpg", cv2.add(image, 12), 95)).phash or 0))
    # Low-contrast brushed metal is the hard case: a few low frequencies sit near the median and flip.
    assert np.median(reencoded) <= 2 and sum(d <= NEAR_DUPLICATE_BITS for d in reencoded) >= 10
    assert max(brighter) <= NEAR_DUPLICATE_BITS
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]) > NEAR_DUPLICATE_BITS


def test_hamming() -> None:
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64


@pytest.mark.parametrize("max_bits", [0, 1, 4, 6, 9])
def test_near_duplicate_pairs_match_brute_force(max_bits: int) -> None:
    rng = random.Random(max_bits)
    hashes = [rng.getrandbits(64) for _ in range(300)]
    for _ in range(60):  # plant near copies at every distance up to max_bits + 2
        source = rng.choice(hashes)
        flips = rng.sample(range(64), rng.randint(0, max_bits + 2))
        hashes.append(source ^ sum(1 << bit for bit in flips))
    expected = [
        (i, j, hamming(hashes[i], hashes[j]))
        for i in range(len(hashes))
        for j in range(i + 1, len(hashes))
        if hamming(hashes[i], hashes[j]) <= max_bits
    ]
    assert near_duplicate_pairs(hashes, max_bits) == expected
    assert len(expected) >= 10


def test_near_duplicate_pairs_edge_cases() -> None:
    assert near_duplicate_pairs([]) == []
    assert near_duplicate_pairs([5]) == []
    assert near_duplicate_pairs([7, 7, 7]) == [(0, 1, 0), (0, 2, 0), (1, 2, 0)]
    with pytest.raises(ValueError, match="max_bits"):
        near_duplicate_pairs([1, 2], max_bits=40)


# --- validation: one test per kind of issue ---


def test_a_clean_dataset_has_no_issues(tmp_path: Path) -> None:
    images = [labelled(write(tmp_path / f"{i}.png", part(i)), box(10, 10, 40, 30)) for i in range(6)]
    report = check(images)
    assert report.issues == ()
    assert report.ok and report.images == 6
    assert render_text(report).startswith("6 images checked: OK (0 errors, 0 warnings, 0 infos)")


def test_unreadable_images_are_errors(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jpg", part(1))
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:500])
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    images = [labelled(tmp_path / n, box(1, 1, 20, 20)) for n in ("good.jpg", "cut.jpg", "junk.png", "gone.png")]
    report = check(images)
    unreadable = report.of_kind(IssueKind.UNREADABLE_IMAGE)
    assert [i.images for i in unreadable] == [("cut.jpg",), ("gone.png",), ("junk.png",)]
    assert all(i.severity is Severity.ERROR for i in unreadable)
    assert "truncated JPEG" in unreadable[0].message
    assert not report.ok


def test_boxes_outside_the_image_say_how_far(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", part(1))
    inside = box(0, 0, SIZE, SIZE)  # touching the edges is fine
    partly = box(100, 50, SIZE + 12.5, 60)
    beyond_top_left = box(-3, -7, 20, 20)
    gone = box(SIZE + 10, 10, SIZE + 30, 20)
    report = check([labelled(path, inside, partly, beyond_top_left, gone)])
    issues = report.of_kind(IssueKind.BOX_OUTSIDE_IMAGE)
    assert [(i.box, i.amount, i.severity) for i in issues] == [
        (1, 12.5, Severity.WARNING),
        (2, 7, Severity.WARNING),
        (3, 30, Severity.ERROR),
    ]
    assert "12.5 px beyond the right edge of the 128x128 image" in issues[0].message
    assert "3 px beyond the left edge, 7 px beyond the top edge" in issues[1].message
    assert "entirely outside" in issues[2].message


def test_outside_check_uses_the_declared_size_when_the_image_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"junk")
    image = labelled(tmp_path / "bad.png", box(0, 0, 120, 10), declared_size=(100, 100))
    issues = check([image]).of_kind(IssueKind.BOX_OUTSIDE_IMAGE)
    assert [(i.box, i.amount) for i in issues] == [(0, 20)]


def test_degenerate_boxes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", part(1))
    boxes = [
        box(10, 10, 10, 30),
        box(10, 10, 5, 30),
        box(10, 10, 30, 10.5),
        box(float("nan"), 1, 5, 5),
        box(1, 1, 2, 2),
    ]
    report = check([labelled(path, *boxes)])
    degenerate = report.of_kind(IssueKind.DEGENERATE_BOX)
    assert [i.box for i in degenerate] == [0, 1, 2, 3]
    assert all(i.severity is Severity.ERROR for i in degenerate)
    assert "0x20 px box" in degenerate[0].message and "-5x20 px box" in degenerate[1].message
    assert report.count(IssueKind.BOX_OUTSIDE_IMAGE) == 0


def test_unknown_classes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", part(1))
    report = check([labelled(path, box(1, 1, 9, 9), box(1, 1, 9, 9, "crack"), box(20, 20, 30, 30, "Scratch"))])
    unknown = report.of_kind(IssueKind.UNKNOWN_CLASS)
    assert [(i.box, i.severity) for i in unknown] == [(1, Severity.ERROR), (2, Severity.ERROR)]
    assert "'crack'" in unknown[0].message


def test_duplicate_boxes_are_same_class_and_almost_the_same_place(tmp_path: Path) -> None:
    path = write(tmp_path / "a.png", part(1))
    boxes = [
        box(10, 10, 50, 50),
        box(10, 10, 50, 50, "dent"),  # another class at the same place: two labels, not a duplicate
        box(10, 10, 50, 50.5),  # IoU 0.9877
        box(60, 60, 100, 100),
        box(60, 60, 100, 96),  # IoU 0.90: a neighbour, not a duplicate
        box(10.2, 10, 50, 50),  # a third copy of box 0
    ]
    issues = check([labelled(path, *boxes)]).of_kind(IssueKind.DUPLICATE_BOX)
    assert [(i.box, i.severity) for i in issues] == [(2, Severity.WARNING), (5, Severity.WARNING)]
    assert issues[0].amount == pytest.approx(40 * 40 / (40 * 40.5), abs=1e-4)
    assert "as box 0" in issues[0].message and "as box 0" in issues[1].message
    assert check([labelled(path, *boxes)], duplicate_box_iou=0.9).count(IssueKind.DUPLICATE_BOX) == 3


def test_missing_labels_are_told_from_background_images(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"{i}.png", part(i)) for i in range(3)]
    images = [
        labelled(paths[0], annotation=Annotation.MISSING),
        labelled(paths[1], annotation=Annotation.BACKGROUND),
        labelled(paths[2]),  # says it has boxes, lists none
    ]
    report = check(images)
    assert [(i.kind, i.images, i.severity) for i in report.issues] == [
        (IssueKind.MISSING_LABELS, ("0.png",), Severity.WARNING),
        (IssueKind.MISSING_LABELS, ("2.png",), Severity.WARNING),
        (IssueKind.BACKGROUND_IMAGE, ("1.png",), Severity.INFO),
    ]
    assert report.ok


def test_declared_size_is_checked_against_the_image(tmp_path: Path) -> None:
    wide = write(tmp_path / "wide.png", np.zeros((60, 90, 3), np.uint8))
    images = [
        labelled(wide, declared_size=(90, 60)),
        LabelledImage("wrong", wide, declared_size=(100, 60)),
        LabelledImage("swapped", wide, declared_size=(60, 90)),
    ]
    issues = check(images).of_kind(IssueKind.SIZE_MISMATCH)
    assert [i.images for i in issues] == [("swapped",), ("wrong",)]
    assert issues[0].message == "annotation says 60x90, the image is 90x60 (swapped: EXIF rotation?)"
    assert issues[1].severity is Severity.ERROR


def test_exact_duplicates_list_every_copy(tmp_path: Path) -> None:
    original = write(tmp_path / "a.png", part(1))
    for name in ("b.png", "c.png"):
        shutil.copy(original, tmp_path / name)
    write(tmp_path / "d.png", part(2))
    images = [labelled(tmp_path / n, box(1, 1, 9, 9)) for n in ("c.png", "d.png", "a.png", "b.png")]
    report = check(images)
    assert [(i.kind, i.images) for i in report.issues] == [(IssueKind.EXACT_DUPLICATE, ("a.png", "b.png", "c.png"))]
    assert report.issues[0].severity is Severity.WARNING
    assert "3 byte-identical files" in report.issues[0].message


def test_near_duplicates_are_reencoded_or_reexposed_copies(tmp_path: Path) -> None:
    image = part(5)
    write(tmp_path / "a.jpg", image, quality=95)
    write(tmp_path / "b.jpg", image, quality=70)
    write(tmp_path / "c.jpg", cv2.add(image, 10), quality=95)
    shutil.copy(tmp_path / "a.jpg", tmp_path / "a-copy.jpg")
    for seed in range(20, 30):
        write(tmp_path / f"other{seed}.jpg", part(seed))
    images = [labelled(path, box(1, 1, 9, 9)) for path in sorted(tmp_path.glob("*.jpg"))]
    report = check(images)
    near = report.of_kind(IssueKind.NEAR_DUPLICATE)
    assert len(near) == 1
    assert near[0].images == ("a-copy.jpg", "a.jpg", "b.jpg", "c.jpg")
    assert near[0].amount is not None and near[0].amount <= NEAR_DUPLICATE_BITS
    assert near[0].message.startswith(f"4 images look alike (perceptual hashes within {NEAR_DUPLICATE_BITS} of 64 bits")
    assert [i.images for i in report.of_kind(IssueKind.EXACT_DUPLICATE)] == [("a-copy.jpg", "a.jpg")]


def test_duplicates_across_splits_are_leakage(tmp_path: Path) -> None:
    write(tmp_path / "a.png", part(1))
    shutil.copy(tmp_path / "a.png", tmp_path / "a-again.png")
    write(tmp_path / "b.jpg", part(2), quality=95)
    write(tmp_path / "b-reencoded.jpg", part(2), quality=70)
    write(tmp_path / "c.png", part(3))
    shutil.copy(tmp_path / "c.png", tmp_path / "c-again.png")
    write(tmp_path / "d.png", part(4))
    shutil.copy(tmp_path / "d.png", tmp_path / "d-again.png")
    splits = {
        "a.png": "train",
        "a-again.png": "val",  # exact copy in another split
        "b.jpg": "train",
        "b-reencoded.jpg": "test",  # near copy in another split
        "c.png": "train",
        "c-again.png": "train",  # both in train: a duplicate, no leak
        "d.png": "val",
        "d-again.png": None,  # not in a split yet: no leak
    }
    images = [labelled(tmp_path / name, box(1, 1, 9, 9), split=split) for name, split in splits.items()]
    report = check(images)
    leaks = report.of_kind(IssueKind.SPLIT_LEAKAGE)
    assert [i.images for i in leaks] == [("a-again.png", "a.png"), ("b-reencoded.jpg", "b.jpg")]
    assert all(i.severity is Severity.ERROR for i in leaks)
    assert leaks[0].message.startswith("the same or nearly the same picture is in train and val")
    assert "b-reencoded.jpg (test)" in leaks[1].message
    assert report.count(IssueKind.EXACT_DUPLICATE) == 3
    (near,) = report.of_kind(IssueKind.NEAR_DUPLICATE)
    assert near.images == ("b-reencoded.jpg", "b.jpg") and f"{near.amount:g} of 64 bits apart" in near.message
    assert not report.ok


def test_report_is_deterministic_and_renders_as_json_and_text(tmp_path: Path) -> None:
    paths = [write(tmp_path / f"{i:02d}.png", part(i)) for i in range(25)]
    images = [labelled(p, box(-5, 1, 9, 9), box(1, 1, 9, 9, "crack")) for p in paths]
    images.append(LabelledImage("dup.png", paths[0], annotation=Annotation.MISSING))  # one file twice: a duplicate
    facts = probe_images(images)
    report = validate(images, facts, CLASSES)
    shuffled = images[::-1]
    assert validate(shuffled, facts, CLASSES).to_json() == report.to_json()
    data = json.loads(report.to_json())
    assert data["summary"]["by_kind"] == {
        "box_outside_image": 25,
        "unknown_class": 25,
        "missing_labels": 1,
        "exact_duplicate": 1,
    }
    assert data["summary"]["by_severity"] == {"error": 25, "warning": 27, "info": 0}
    assert data["issues"][0] == {
        "kind": "box_outside_image",
        "severity": "warning",
        "images": ["00.png"],
        "box": 0,
        "amount": 5.0,
        "message": "5 px beyond the left edge of the 128x128 image",
    }
    text = render_text(report, max_per_kind=3)
    assert text.startswith("26 images checked: NOT OK (25 errors, 27 warnings, 0 infos)")
    assert "\nbox_outside_image (warning): 25\n  00.png box 0: 5 px beyond the left edge" in text
    assert "  ... and 22 more" in text
    assert "exact_duplicate (warning): 1\n  2 byte-identical files: 00.png, dup.png\n" in text


def test_images_must_be_probed(tmp_path: Path) -> None:
    image = labelled(write(tmp_path / "a.png", part(1)))
    with pytest.raises(ValueError, match=r"1 of 1 images were not probed \(first: 'a\.png'\)"):
        validate([image], {}, CLASSES)
