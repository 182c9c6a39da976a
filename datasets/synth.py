"""Synthetic parts with labelled defects, reproducible from a seed: for the demo and for fast tests.

Two surfaces: brushed ``metal`` (scratches, dents, stains) and ``pcb`` boards (opens, shorts, spurious
copper). Each defect is painted onto a defect-free part and labelled with the box of what was painted, so the
labels are exact. About one part in six is defect-free, as on a real line (these are background images).

:func:`generate_part` gives every part a surface of its own: varied training data. A real line makes one product
over and over, which is what a golden sample is compared with; :class:`PartDesign` and :func:`line_part` make
such parts (one blank, each part with its own defects, each photographed anew), and :func:`golden_sample` the
defect-free blank photographed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from lineqa.vision.perturb import Shot, photograph, random_shot, shot_transform

Box = tuple[int, int, int, int]


class Surface(str, Enum):
    METAL = "metal"
    PCB = "pcb"


CLASSES: dict[Surface, tuple[str, ...]] = {
    Surface.METAL: ("scratch", "dent", "stain"),
    Surface.PCB: ("open", "short", "copper"),
}


@dataclass(frozen=True)
class SyntheticPart:
    """One BGR image and its defects as (class id, x1, y1, x2, y2) in pixels."""

    image: np.ndarray
    labels: tuple[tuple[int, int, int, int, int], ...]


def _clip_box(x1: float, y1: float, x2: float, y2: float, size: int) -> Box:
    return (max(0, int(x1)), max(0, int(y1)), min(size, math.ceil(x2)), min(size, math.ceil(y2)))


def _metal_base(rng: np.random.Generator, size: int) -> np.ndarray:
    grain: np.ndarray = rng.normal(0, 1, (size, size)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), sigmaX=9, sigmaY=0.6)  # brushed along x
    tone = rng.uniform(120, 170)
    light = np.linspace(-18, 18, size, dtype=np.float32)[None, :] * rng.uniform(-1, 1)
    gray = tone + light + grain * 14 + rng.normal(0, 2.5, (size, size)).astype(np.float32)
    return np.repeat(gray[..., None], 3, axis=2)


def _scratch(canvas: np.ndarray, rng: np.random.Generator) -> Box:
    size = canvas.shape[0]
    length = rng.uniform(0.12, 0.35) * size
    angle = rng.uniform(0, math.pi)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    p1, p2 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
    shade = rng.choice([-1.0, 1.0]) * rng.uniform(45, 80)
    layer = np.zeros(canvas.shape[:2], np.float32)
    cv2.line(layer, p1, p2, (1.0,), int(rng.integers(1, 3)), cv2.LINE_AA)
    canvas += layer[..., None] * shade
    pad = 3
    return _clip_box(
        min(p1[0], p2[0]) - pad,
        min(p1[1], p2[1]) - pad,
        max(p1[0], p2[0]) + pad,
        max(p1[1], p2[1]) + pad,
        size,
    )


def _dent(canvas: np.ndarray, rng: np.random.Generator) -> Box:
    size = canvas.shape[0]
    radius = rng.uniform(0.03, 0.07) * size
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy) / radius
    bowl = np.clip(1 - dist, 0, 1)
    shading = ((xx - cx) + (yy - cy)) / radius  # lit from the top left
    canvas += (bowl * shading * 55 - bowl * 20)[..., None]
    return _clip_box(cx - radius, cy - radius, cx + radius, cy + radius, size)


def _stain(canvas: np.ndarray, rng: np.random.Generator) -> Box:
    size = canvas.shape[0]
    axes = (rng.uniform(0.03, 0.08) * size, rng.uniform(0.03, 0.08) * size)
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    layer: np.ndarray = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(layer, (int(cx), int(cy)), (int(axes[0]), int(axes[1])), rng.uniform(0, 180), 0, 360, (1.0,), -1)
    layer = cv2.GaussianBlur(layer, (0, 0), 2.0)
    tint = np.array([rng.uniform(-70, -40), rng.uniform(-55, -30), rng.uniform(-20, 0)], np.float32)
    canvas += layer[..., None] * tint
    ys, xs = np.nonzero(layer > 0.05)
    return _clip_box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, size)


_BOARD_BGR = np.array([40, 70, 30], np.float32)
_COPPER_BGR = np.array([70, 150, 200], np.float32)


def _pcb_base(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """A board with horizontal traces; returns the canvas and the traces as (y, x_start, x_end)."""
    canvas = np.empty((size, size, 3), np.float32)
    canvas[:] = _BOARD_BGR + rng.normal(0, 4, (size, size, 3)).astype(np.float32)
    traces = []
    y = int(rng.integers(12, 24))
    while y < size - 12:
        x0, x1 = int(rng.integers(0, size // 6)), int(rng.integers(size * 5 // 6, size))
        width = int(rng.integers(5, 9))
        cv2.line(canvas, (x0, y), (x1, y), _COPPER_BGR.tolist(), width)
        cv2.circle(canvas, (x0 + 6, y), width + 3, _COPPER_BGR.tolist(), -1)
        traces.append((y, x0 + 20, x1 - 20))
        y += int(rng.integers(26, 40))
    return canvas, traces


def _open(canvas: np.ndarray, rng: np.random.Generator, traces: list[tuple[int, int, int]]) -> Box:
    y, xa, xb = traces[int(rng.integers(len(traces)))]
    x = int(rng.integers(xa, max(xa + 1, xb - 12)))
    gap = int(rng.integers(5, 12))
    canvas[y - 7 : y + 8, x : x + gap] = _BOARD_BGR
    return _clip_box(x - 4, y - 9, x + gap + 4, y + 9, canvas.shape[0])


def _short(canvas: np.ndarray, rng: np.random.Generator, traces: list[tuple[int, int, int]]) -> Box:
    i = int(rng.integers(len(traces) - 1))
    (y1, xa, xb), (y2, _, _) = traces[i], traces[i + 1]
    x = int(rng.integers(xa, max(xa + 1, xb)))
    width = int(rng.integers(3, 7))
    cv2.line(canvas, (x, y1), (x + int(rng.integers(-6, 7)), y2), _COPPER_BGR.tolist(), width)
    return _clip_box(x - 10, y1 - 2, x + 12, y2 + 2, canvas.shape[0])


def _copper(canvas: np.ndarray, rng: np.random.Generator, traces: list[tuple[int, int, int]]) -> Box:
    size = canvas.shape[0]
    y, xa, xb = traces[int(rng.integers(len(traces)))]
    cx = int(rng.integers(xa, max(xa + 1, xb)))
    cy = y + int(rng.choice([-1, 1]) * rng.integers(12, 16))
    radius = int(rng.integers(3, 7))
    cv2.circle(canvas, (cx, cy), radius, _COPPER_BGR.tolist(), -1)
    return _clip_box(cx - radius - 2, cy - radius - 2, cx + radius + 3, cy + radius + 3, size)


def generate_part(surface: Surface, seed: int, size: int = 320, max_defects: int = 3) -> SyntheticPart:
    """One part, identical for the same (surface, seed, size, max_defects)."""
    rng = np.random.default_rng([seed, list(Surface).index(surface)])
    count = 0 if rng.random() < 1 / 6 else int(rng.integers(1, max_defects + 1))
    labels = []
    if surface is Surface.METAL:
        canvas = _metal_base(rng, size)
        painters: list[Callable[[np.ndarray, np.random.Generator], Box]] = [_scratch, _dent, _stain]
        for _ in range(count):
            class_id = int(rng.integers(len(painters)))
            labels.append((class_id, *painters[class_id](canvas, rng)))
    else:
        canvas, traces = _pcb_base(rng, size)
        board_painters = [_open, _short, _copper]
        for _ in range(count):
            class_id = int(rng.integers(len(board_painters)))
            labels.append((class_id, *board_painters[class_id](canvas, rng, traces)))
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    return SyntheticPart(image, tuple(labels))


def write_yolo_dataset(root: Path, surface: Surface, *, train: int, val: int, seed: int = 0, size: int = 320) -> Path:
    """Write an Ultralytics-format dataset (images, labels, data.yaml) of synthetic parts; return data.yaml."""
    for split, count, offset in (("train", train, 0), ("val", val, train)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            part = generate_part(surface, seed * 1_000_003 + offset + index, size)
            stem = f"{surface.value}_{offset + index:05d}"
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), part.image)
            rows = [
                f"{c} {(x1 + x2) / 2 / size:.6f} {(y1 + y2) / 2 / size:.6f} "
                f"{(x2 - x1) / size:.6f} {(y2 - y1) / size:.6f}"
                for c, x1, y1, x2, y2 in part.labels
            ]
            (root / "labels" / split / f"{stem}.txt").write_text("".join(r + "\n" for r in rows))
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASSES[surface]))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data_yaml


_DESIGN_STREAM, _GOLDEN_STREAM, _PART_STREAM = 11, 12, 13  # keep a design's random streams apart
_THROUGH_BGR = np.array([38, 36, 34], np.float32)  # through a cut-out: the dark fixture below the part


@dataclass(frozen=True)
class PartDesign:
    """One product as a line makes it: every part is the same blank, so one golden sample matches them all.

    ``seed`` fixes the blank: the brushed grain, tone and light of :func:`generate_part`'s metal, plus a slot
    cut through the part. The slot is what makes it a recognisable part and, more to the point, what gives a
    golden-sample alignment something to lock onto: brushed grain runs along x only, so on grain alone a shift
    along x could not be measured, while the slot's long sides fix x and the turn, its rounded ends y. One slot
    and no drilled holes: the demo's detector, trained on featureless metal, takes the bright rim of a drilled
    hole for a scratch (18 of 25 good parts with four holes FAILed; with the slot alone, none did).
    """

    seed: int
    size: int = 320

    def __post_init__(self) -> None:
        if self.size < 64:
            raise ValueError(f"expected a design of at least 64 px, got {self.size}")


@dataclass(frozen=True)
class LinePart:
    """A part of a design: ``made`` is the blank with its painted defects, in the design's own pixel grid;
    ``photo`` is that part as the camera saw it under ``shot`` (moved, lit, blurred, noisy), with each box
    moved along, so its labels stay exact for the image a detector or a golden-sample comparison gets."""

    made: SyntheticPart
    shot: Shot
    photo: SyntheticPart


def _slot(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """A slot across the grain with rounded ends (a thick line with round caps)."""
    size = canvas.shape[0]
    x = int(rng.uniform(0.4, 0.6) * size)
    y1, y2 = int(rng.uniform(0.3, 0.38) * size), int(rng.uniform(0.5, 0.6) * size)
    width = int(rng.uniform(0.03, 0.045) * size)
    cv2.line(canvas, (x, y1), (x, y2), _THROUGH_BGR.tolist(), 2 * width, cv2.LINE_AA)


def design_blank(design: PartDesign) -> np.ndarray:
    """The design's defect-free part as made (float32 BGR, unclipped): what every part starts from."""
    rng = np.random.default_rng([design.seed, _DESIGN_STREAM])
    canvas = np.ascontiguousarray(_metal_base(rng, design.size))
    _slot(canvas, rng)
    return canvas


def golden_sample(design: PartDesign) -> np.ndarray:
    """The design's golden sample: the defect-free blank photographed once (uint8 BGR), with a shot of its own.

    Photographed like any part, not the blank itself: a real golden sample is a camera image too, so the
    comparison must cope with two shots that both moved, blurred and added noise.
    """
    rng = np.random.default_rng([design.seed, _GOLDEN_STREAM])
    blank = np.clip(design_blank(design), 0, 255).astype(np.uint8)
    return photograph(blank, random_shot(rng), rng)


def _moved_box(box: Box, matrix: np.ndarray, size: int) -> Box:
    """The bounding box of ``box``'s corners moved by the 2x3 ``matrix``, clipped to the image, rounded outwards."""
    x1, y1, x2, y2 = box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], np.float64).T
    xs, ys = matrix @ corners
    return _clip_box(math.floor(xs.min()), math.floor(ys.min()), xs.max(), ys.max(), size)


def line_part(design: PartDesign, seed: int, max_defects: int = 3) -> LinePart:
    """Part ``seed`` of ``design``: the blank, defects painted by :func:`generate_part`'s metal painters (same
    classes, same share of defect-free parts), then photographed with a shot drawn from the seed (see
    :func:`lineqa.vision.perturb.random_shot`). Identical for the same (design, seed, max_defects)."""
    rng = np.random.default_rng([design.seed, _PART_STREAM, seed])
    count = 0 if rng.random() < 1 / 6 else int(rng.integers(1, max_defects + 1))
    canvas = design_blank(design)
    painters: list[Callable[[np.ndarray, np.random.Generator], Box]] = [_scratch, _dent, _stain]
    labels: list[tuple[int, int, int, int, int]] = []
    for _ in range(count):
        class_id = int(rng.integers(len(painters)))
        labels.append((class_id, *painters[class_id](canvas, rng)))
    made = SyntheticPart(np.clip(canvas, 0, 255).astype(np.uint8), tuple(labels))
    shot = random_shot(rng)
    matrix = shot_transform(shot, design.size, design.size)
    moved = tuple((c, *_moved_box((x1, y1, x2, y2), matrix, design.size)) for c, x1, y1, x2, y2 in labels)
    photo = SyntheticPart(photograph(made.image, shot, rng), moved)
    return LinePart(made, shot, photo)
