"""Validation, statistics and splits on the real datasets: NEU-DET steel surfaces and DeepPCB boards.

The images are read with a few lines here (not the catalog's importers), so that these checks stand alone.
Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import hashlib
import itertools
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import pytest

from lineqa.datasets.model import Box, LabelledImage
from lineqa.datasets.probe import ImageFacts, near_duplicate_pairs, probe_images
from lineqa.datasets.splits import apply_splits, assign_splits
from lineqa.datasets.stats import compute_stats, plot_box_sizes
from lineqa.datasets.validate import IssueKind, render_text, validate
from tests.helpers.deeppcb import DEEPPCB_CLASSES, deeppcb_pairs, read_boxes

NEU_CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")


def neudet_images(root: Path) -> list[LabelledImage]:
    """Images with their Pascal VOC boxes (1-based inclusive corners, hence the -1) and declared sizes."""
    images = []
    for path in sorted((root / "IMAGES").glob("*.jpg")):
        xml = ET.parse(root / "ANNOTATIONS" / f"{path.stem}.xml").getroot()
        boxes = tuple(
            Box(
                obj.findtext("name", ""),
                float(obj.findtext("bndbox/xmin", "0")) - 1,
                float(obj.findtext("bndbox/ymin", "0")) - 1,
                float(obj.findtext("bndbox/xmax", "0")),
                float(obj.findtext("bndbox/ymax", "0")),
            )
            for obj in xml.iter("object")
        )
        size = (int(xml.findtext("size/width", "0")), int(xml.findtext("size/height", "0")))
        images.append(LabelledImage(path.name, path, boxes, declared_size=size))
    return images


def deeppcb_images(root: Path) -> list[LabelledImage]:
    """The 1,000 defective boards; the group is the ``groupNNNNN`` folder (one board design)."""
    images = []
    for image, annotation in deeppcb_pairs(root):
        name = image.relative_to(root).as_posix()
        boxes = tuple(Box(DEEPPCB_CLASSES[c], x1, y1, x2, y2) for c, x1, y1, x2, y2 in read_boxes(annotation))
        images.append(LabelledImage(name, image, boxes, group=name.split("/")[0]))
    return images


def timed_probe(images: list[LabelledImage], label: str) -> dict[str, ImageFacts]:
    start = time.perf_counter()
    facts = probe_images(images)
    print(f"\n{label}: probed {len(images)} images in {time.perf_counter() - start:.2f} s")
    return facts


@pytest.fixture(scope="module")
def deeppcb(deeppcb_root: Path) -> tuple[list[LabelledImage], dict[str, ImageFacts]]:
    images = deeppcb_images(deeppcb_root)
    return images, timed_probe(images, "DeepPCB")


def test_neudet_reports_its_byte_identical_duplicates(neudet_root: Path, artifacts_dir: Path) -> None:
    images = neudet_images(neudet_root)
    assert len(images) == 1500
    facts = timed_probe(images, "NEU-DET")
    report = validate(images, facts, NEU_CLASSES)
    print(render_text(report, max_per_kind=5))
    exact = report.of_kind(IssueKind.EXACT_DUPLICATE)
    assert len(exact) == 1 and len(exact[0].images) == 2
    first, second = (neudet_root / "IMAGES" / name for name in exact[0].images)
    assert first.read_bytes() == second.read_bytes()
    by_hash = Counter(hashlib.sha256(image.path.read_bytes()).hexdigest() for image in images)
    assert sorted(by_hash.values())[-2:] == [1, 2]  # the report's pair is the only one
    # Nothing else is wrong enough to stop training, and no two different pictures are near duplicates.
    assert report.ok
    for kind in (IssueKind.UNREADABLE_IMAGE, IssueKind.SIZE_MISMATCH, IssueKind.NEAR_DUPLICATE):
        assert report.count(kind) == 0, kind
    stats = compute_stats(images, facts, NEU_CLASSES, source_of=lambda image: image.name.rsplit("_", 1)[0])
    assert stats.image_sizes == {"200x200": 1500}
    assert all(part.images == 250 for part in stats.per_source.values())
    out = plot_box_sizes(stats, artifacts_dir / "neudet-box-sizes.png", title="NEU-DET box sizes")
    assert cv2.imread(str(out)) is not None


def test_deeppcb_probe_near_duplicates_and_stats(
    deeppcb: tuple[list[LabelledImage], dict[str, ImageFacts]], artifacts_dir: Path
) -> None:
    images, facts = deeppcb
    assert all(fact.error is None and (fact.width, fact.height) == (640, 640) for fact in facts.values())
    channels = Counter(fact.channels for fact in facts.values())
    print(f"DeepPCB: stored channels {dict(channels)}")
    assert set(channels) == {1, 3} and channels[1] > 900  # binarised boards, mostly stored gray
    start = time.perf_counter()
    pairs = near_duplicate_pairs([facts[image.name].phash or 0 for image in images])
    print(f"DeepPCB: {len(pairs)} near-duplicate pairs found in {time.perf_counter() - start:.3f} s")
    # The near duplicates are shots of the same board area: always within one board design.
    assert pairs and all(images[i].group == images[j].group for i, j, _ in pairs)
    stats = compute_stats(images, facts, DEEPPCB_CLASSES)
    assert stats.boxes == 6873
    assert stats.box_width is not None and stats.box_height is not None
    assert abs(stats.box_width.median - 35) <= 2 and abs(stats.box_height.median - 33) <= 2
    out = plot_box_sizes(stats, artifacts_dir / "deeppcb-box-sizes.png", title="DeepPCB box sizes")
    assert cv2.imread(str(out)) is not None


def best_possible_gap(images: list[LabelledImage], val_ratio: float) -> float:
    """The smallest largest gap between a class's share in val and ``val_ratio`` over every way of putting whole
    groups in val (DeepPCB has 7 groups: 128 ways)."""
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    for image in images:
        per_group[image.group or ""].update(box.class_name for box in image.boxes)
    totals = sum(per_group.values(), Counter())
    best = 1.0
    for chosen in itertools.product([False, True], repeat=len(per_group)):
        val = sum((c for c, pick in zip(per_group.values(), chosen, strict=True) if pick), Counter())
        best = min(best, max(abs(val[name] / totals[name] - val_ratio) for name in totals))
    return best


def test_deeppcb_group_aware_split_keeps_every_board_together(
    deeppcb: tuple[list[LabelledImage], dict[str, ImageFacts]],
) -> None:
    images, facts = deeppcb
    result = assign_splits(images, {"train": 0.8, "val": 0.2}, seed=0)
    print(result.report.render_text())
    splits_of_group: dict[str | None, set[str]] = defaultdict(set)
    for image in images:
        splits_of_group[image.group].add(result.assignment[image.name])
    assert len(splits_of_group) == 7 and all(len(splits) == 1 for splits in splits_of_group.values())
    assert {split for splits in splits_of_group.values() for split in splits} == {"train", "val"}
    # Seven boards of 50 to 291 images cannot be cut at exactly 80/20; the split is as close as any can be.
    gaps = {name: abs(result.report.share("val", name) - 0.2) for name in DEEPPCB_CLASSES}
    assert max(gaps.values()) <= 0.06, gaps
    assert max(gaps.values()) <= best_possible_gap(images, 0.2) + 0.01
    assert abs(result.report.splits["val"].images - 200) <= 30
    # Group-aware, the near-duplicate shots of one board cannot leak; split image by image, some do.
    assert validate(apply_splits(images, result.assignment), facts, DEEPPCB_CLASSES).count(IssueKind.SPLIT_LEAKAGE) == 0
    per_image = assign_splits(images, {"train": 0.8, "val": 0.2}, seed=0, group_of=lambda image: image.name)
    leaks = validate(apply_splits(images, per_image.assignment), facts, DEEPPCB_CLASSES)
    assert leaks.count(IssueKind.SPLIT_LEAKAGE) > 0
    assert per_image.report.max_share_error() < 0.01
