"""What a dataset holds, in numbers: how many images and boxes, per class, per split and per source, and how
large the boxes are.

Class balance tells whether a rare defect has enough examples to be learned; the box-size distribution tells
which input size and tiling a model needs (a 35 px defect on a 640 px board survives a 320 px input, an 8 px
one does not); per-source counts show when one tenant's or one camera's images dominate a pooled set.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.datasets.probe import ImageFacts

NO_SPLIT = "(none)"
_QUANTILES = {"p10": 0.10, "p25": 0.25, "median": 0.50, "p75": 0.75, "p90": 0.90}


@dataclass(frozen=True)
class Distribution:
    """Summary of a list of numbers: extremes, mean and quantiles (p10 to p90)."""

    count: int
    min: float
    p10: float
    p25: float
    median: float
    p75: float
    p90: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution | None:
        """``None`` for no values: an empty distribution has no quantiles."""
        array = np.asarray(list(values), dtype=float)
        if array.size == 0:
            return None
        q = {name: round(float(np.quantile(array, p)), 3) for name, p in _QUANTILES.items()}
        return cls(
            count=int(array.size),
            min=round(float(array.min()), 3),
            max=round(float(array.max()), 3),
            mean=round(float(array.mean()), 3),
            **q,
        )


@dataclass(frozen=True)
class Breakdown:
    """Counts of one part of a dataset (a split or a source)."""

    images: int
    boxes: int
    background: int
    missing: int
    boxes_per_class: Mapping[str, int]


@dataclass(frozen=True)
class DatasetStats:
    """A dataset in numbers. Box sizes are in pixels of the full image; ``box_sizes`` keeps √(w·h) of every box
    by class for :func:`plot_box_sizes` (left out of the JSON)."""

    classes: tuple[str, ...]
    images: int
    unreadable: int
    boxes: int
    background: int
    missing: int
    boxes_per_class: Mapping[str, int]
    images_per_class: Mapping[str, int]
    image_sizes: Mapping[str, int]
    boxes_per_image: Distribution | None
    box_width: Distribution | None
    box_height: Distribution | None
    box_area: Distribution | None
    per_split: Mapping[str, Breakdown]
    per_source: Mapping[str, Breakdown]
    box_sizes: Mapping[str, tuple[float, ...]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        del data["box_sizes"]
        data["classes"] = list(self.classes)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _class_order(found: Iterable[str], classes: Sequence[str]) -> list[str]:
    """The dataset's classes in their order, then any other class found (an unknown one), sorted."""
    return [*classes, *sorted(set(found) - set(classes))]


def _ordered(counts: Counter[str], classes: Sequence[str]) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in _class_order(counts, classes)}


def _breakdown(images: Sequence[LabelledImage], classes: Sequence[str]) -> Breakdown:
    return Breakdown(
        images=len(images),
        boxes=sum(len(image.boxes) for image in images),
        background=sum(1 for image in images if image.annotation is Annotation.BACKGROUND),
        missing=sum(1 for image in images if image.annotation is Annotation.MISSING),
        boxes_per_class=_ordered(Counter(box.class_name for image in images for box in image.boxes), classes),
    )


def _by_key(
    images: Sequence[LabelledImage], key: Callable[[LabelledImage], str], classes: Sequence[str]
) -> dict[str, Breakdown]:
    parts: dict[str, list[LabelledImage]] = {}
    for image in images:
        parts.setdefault(key(image), []).append(image)
    return {name: _breakdown(parts[name], classes) for name in sorted(parts)}


def _side(length: float) -> float:
    """A box side for the size distributions: degenerate (negative or NaN) sides count as 0 px."""
    return length if math.isfinite(length) and length > 0 else 0.0


def compute_stats(
    images: Sequence[LabelledImage],
    facts: Mapping[str, ImageFacts],
    classes: Sequence[str],
    source_of: Callable[[LabelledImage], str] | None = None,
) -> DatasetStats:
    """Count a dataset. ``facts`` (by image name, from :mod:`lineqa.datasets.probe`) give the real image sizes and which
    images are unreadable; ``source_of`` names where an image came from, for the per-source breakdown."""
    boxes = [box for image in images for box in image.boxes]
    widths = [_side(box.width) for box in boxes]
    heights = [_side(box.height) for box in boxes]
    sizes: dict[str, list[float]] = {}
    for box, w, h in zip(boxes, widths, heights, strict=True):
        sizes.setdefault(box.class_name, []).append(float(np.sqrt(w * h)))
    probed = [facts[image.name] for image in images if image.name in facts]
    whole = _breakdown(images, classes)
    return DatasetStats(
        classes=tuple(classes),
        images=len(images),
        unreadable=sum(1 for fact in probed if fact.error is not None),
        boxes=len(boxes),
        background=whole.background,
        missing=whole.missing,
        boxes_per_class=whole.boxes_per_class,
        images_per_class=_ordered(Counter(name for im in images for name in {b.class_name for b in im.boxes}), classes),
        image_sizes=dict(
            sorted(
                Counter(f"{f.width}x{f.height}" for f in probed if f.error is None).items(),
                key=lambda kv: (-kv[1], kv[0]),
            )
        ),
        boxes_per_image=Distribution.of(len(image.boxes) for image in images),
        box_width=Distribution.of(widths),
        box_height=Distribution.of(heights),
        box_area=Distribution.of(w * h for w, h in zip(widths, heights, strict=True)),
        per_split=_by_key(images, lambda image: image.split or NO_SPLIT, classes),
        per_source=_by_key(images, source_of, classes) if source_of is not None else {},
        box_sizes={name: tuple(sizes[name]) for name in _class_order(sizes, classes) if name in sizes},
    )


def _distribution_line(label: str, dist: Distribution | None) -> str:
    if dist is None:
        return f"  {label}: -"
    return (
        f"  {label}: min {dist.min:g}, p10 {dist.p10:g}, median {dist.median:g}, p90 {dist.p90:g}, "
        f"max {dist.max:g} (mean {dist.mean:g})"
    )


def _table(title: str, parts: Mapping[str, Breakdown]) -> list[str]:
    lines = [f"{title}:"]
    for name, part in parts.items():
        per_class = ", ".join(f"{c} {n}" for c, n in part.boxes_per_class.items())
        lines.append(
            f"  {name}: {part.images} images, {part.boxes} boxes ({per_class}), "
            f"{part.background} background, {part.missing} unlabelled"
        )
    return lines


def render_text(stats: DatasetStats) -> str:
    """The statistics for a terminal."""
    lines = [
        f"{stats.images} images ({stats.unreadable} unreadable, {stats.background} background, "
        f"{stats.missing} unlabelled), {stats.boxes} boxes",
        "image sizes: " + (", ".join(f"{size} x{n}" for size, n in stats.image_sizes.items()) or "-"),
        "class: boxes / images",
        *(f"  {c}: {n} / {stats.images_per_class.get(c, 0)}" for c, n in stats.boxes_per_class.items()),
        "box sizes in px:",
        _distribution_line("width", stats.box_width),
        _distribution_line("height", stats.box_height),
        _distribution_line("area", stats.box_area),
        _distribution_line("boxes per image", stats.boxes_per_image),
        *_table("per split", stats.per_split),
    ]
    if stats.per_source:
        lines += _table("per source", stats.per_source)
    return "\n".join(lines) + "\n"


def plot_box_sizes(source: DatasetStats | Iterable[Box], out_png: Path, *, title: str = "Box sizes") -> Path:
    """Write a histogram of box sizes (√(w·h) in px, log scale, one line per class) to ``out_png``: the picture
    that tells at a glance whether defects are a few pixels or half the image."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise DatasetError("plotting box sizes needs matplotlib: pip install matplotlib") from exc
    if isinstance(source, DatasetStats):
        sizes = {name: np.array(values) for name, values in source.box_sizes.items()}
    else:
        grouped: dict[str, list[float]] = {}
        for box in source:
            grouped.setdefault(box.class_name, []).append(float(np.sqrt(_side(box.width) * _side(box.height))))
        sizes = {name: np.array(grouped[name]) for name in sorted(grouped)}
    shown = {name: values[values > 0] for name, values in sizes.items()}
    total = sum(len(values) for values in sizes.values())
    hidden = total - sum(len(values) for values in shown.values())
    figure = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positive = np.concatenate([np.empty(0), *shown.values()])
    if positive.size:
        low, high = float(positive.min()), float(positive.max())
        bins = np.geomspace(low / 1.1, high * 1.1, 31).tolist()
        for name, values in shown.items():
            if values.size:
                axes.hist(values, bins=bins, histtype="step", linewidth=1.6, label=f"{name} ({values.size})")
        axes.set_xscale("log")
        # Pixel sizes people read (1, 2, 4 ... px) instead of powers of ten.
        ticks = [2.0**k for k in range(int(np.floor(np.log2(bins[0]))), int(np.ceil(np.log2(bins[-1]))) + 1)]
        axes.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        axes.minorticks_off()
        axes.legend(title="class (boxes)", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no boxes", ha="center", va="center", transform=axes.transAxes)
    note = f", {hidden} empty not shown" if hidden else ""
    axes.set_title(f"{title}: {total} boxes{note}")
    axes.set_xlabel("box size √(width × height) in px (log scale)")
    axes.set_ylabel("boxes")
    axes.grid(alpha=0.3, which="both")
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    return out_png
