"""Dataset statistics on a tiny set counted by hand, and the box-size histogram."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.datasets.probe import ImageFacts
from lineqa.datasets.stats import Distribution, compute_stats, plot_box_sizes, render_text

CLASSES = ("cat", "dog", "bird")


def tiny() -> tuple[list[LabelledImage], dict[str, ImageFacts]]:
    """Three images: two cats and a dog in ``a`` (train, source s1), background ``b`` (val, s2), unlabelled and
    unreadable ``c`` (train, s1); ``d`` (no split, s2) has a box of a class not in CLASSES."""
    images = [
        LabelledImage(
            "a",
            Path("a.png"),
            (Box("cat", 0, 0, 10, 10), Box("cat", 5, 5, 25, 10), Box("dog", 1, 1, 5, 5)),
            split="train",
        ),
        LabelledImage("b", Path("b.png"), annotation=Annotation.BACKGROUND, split="val"),
        LabelledImage("c", Path("c.png"), annotation=Annotation.MISSING, split="train"),
        LabelledImage("d", Path("d.png"), (Box("fox", 0, 0, 30, 30),)),
    ]
    facts = {
        "a": ImageFacts("1" * 64, 10, 100, 50, 3, 0),
        "b": ImageFacts("2" * 64, 10, 100, 50, 1, 1),
        "c": ImageFacts("3" * 64, 10, error="truncated"),
        "d": ImageFacts("4" * 64, 10, 64, 64, 3, 2),
    }
    return images, facts


def test_counts_on_a_set_counted_by_hand() -> None:
    images, facts = tiny()
    stats = compute_stats(images, facts, CLASSES, source_of=lambda image: "s1" if image.name in "ac" else "s2")
    assert (stats.images, stats.boxes, stats.unreadable, stats.background, stats.missing) == (4, 4, 1, 1, 1)
    assert stats.boxes_per_class == {"cat": 2, "dog": 1, "bird": 0, "fox": 1}
    assert stats.images_per_class == {"cat": 1, "dog": 1, "bird": 0, "fox": 1}
    assert stats.image_sizes == {"100x50": 2, "64x64": 1}
    # Widths 10, 20, 4, 30; heights 10, 5, 4, 30; areas 100, 100, 16, 900.
    assert stats.box_width == Distribution(4, 4.0, 5.8, 8.5, 15.0, 22.5, 27.0, 30.0, 16.0)
    assert stats.box_height is not None and (stats.box_height.min, stats.box_height.median) == (4, 7.5)
    assert stats.box_area is not None and (stats.box_area.median, stats.box_area.mean) == (100, 279)
    assert stats.boxes_per_image is not None and (stats.boxes_per_image.max, stats.boxes_per_image.mean) == (3, 1)
    assert list(stats.per_split) == ["(none)", "train", "val"]
    train = stats.per_split["train"]
    assert (train.images, train.boxes, train.background, train.missing) == (2, 3, 0, 1)
    assert stats.per_split["val"].background == 1
    assert stats.per_source["s1"].boxes_per_class == {"cat": 2, "dog": 1, "bird": 0}
    assert stats.per_source["s2"].boxes_per_class == {"cat": 0, "dog": 0, "bird": 0, "fox": 1}
    assert stats.box_sizes == {"cat": (10.0, 10.0), "dog": (4.0,), "fox": (30.0,)}


def test_json_and_text() -> None:
    images, facts = tiny()
    stats = compute_stats(images, facts, CLASSES)
    data = json.loads(stats.to_json())
    assert "box_sizes" not in data and data["per_source"] == {}
    assert data["boxes_per_class"]["cat"] == 2 and data["box_area"]["max"] == 900
    text = render_text(stats)
    assert text.startswith("4 images (1 unreadable, 1 background, 1 unlabelled), 4 boxes\n")
    assert "  cat: 2 / 1\n" in text and "  bird: 0 / 0\n" in text
    assert "  width: min 4, p10 5.8, median 15, p90 27, max 30 (mean 16)\n" in text
    assert "  train: 2 images, 3 boxes (cat 2, dog 1, bird 0), 0 background, 1 unlabelled" in text


def test_an_empty_dataset() -> None:
    stats = compute_stats([], {}, CLASSES)
    assert (stats.images, stats.boxes, stats.box_width, stats.boxes_per_image) == (0, 0, None, None)
    assert "  width: -" in render_text(stats)


def test_degenerate_boxes_count_as_zero_size() -> None:
    image = LabelledImage(
        "a", Path("a.png"), (Box("cat", 10, 10, 5, 20), Box("cat", 0, 0, 4, 9), Box("cat", float("nan"), 0, 1, 1))
    )
    stats = compute_stats([image], {}, CLASSES)
    assert stats.box_width is not None and stats.box_width.min == 0
    assert stats.box_sizes == {"cat": (0.0, 6.0, 0.0)}


def skewed_boxes() -> list[Box]:
    rng = np.random.default_rng(0)
    boxes = [Box("small", 0, 0, float(s), float(s)) for s in rng.lognormal(np.log(12), 0.3, 400)]
    boxes += [Box("large", 0, 0, float(s), float(s) * 0.5) for s in rng.lognormal(np.log(150), 0.4, 60)]
    return [*boxes, Box("large", 5, 5, 5, 9)]


def test_box_size_histogram_is_a_readable_png(tmp_path: Path) -> None:
    image = LabelledImage("a", Path("a.png"), tuple(skewed_boxes()))
    stats = compute_stats([image], {}, ["small", "large"])
    out = plot_box_sizes(stats, tmp_path / "plots" / "sizes.png", title="Skewed")
    assert out == tmp_path / "plots" / "sizes.png" and out.stat().st_size > 10_000
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape == (500, 800, 3)
    assert picture.std() > 10  # lines and text, not a blank canvas
    from_boxes = plot_box_sizes(skewed_boxes(), tmp_path / "boxes.png")
    assert cv2.imread(str(from_boxes)).shape == (500, 800, 3)


def test_box_size_histogram_of_no_boxes(tmp_path: Path) -> None:
    out = plot_box_sizes([], tmp_path / "empty.png")
    assert cv2.imread(str(out)).shape == (500, 800, 3)


def test_box_size_histogram_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(DatasetError, match="needs matplotlib"):
        plot_box_sizes(skewed_boxes(), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
