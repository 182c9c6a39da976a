"""What every importer produces and every exporter, check and split consumes: labelled images with boxes in
pixels and classes by name, independent of the format they came from.

Class names, not ids, travel with boxes: formats number classes differently (YOLO from 0, DeepPCB from 1,
COCO by category id), and pooling datasets of several tenants maps names, never numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of the full image (x1 < x2, y1 < y2 for a valid one)."""

    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


class Annotation(str, Enum):
    """Whether an image was looked at by a labeller: an image with no annotation at all is not the same as
    an image deliberately labelled defect-free (a background image, a useful hard negative)."""

    BOXES = "boxes"
    BACKGROUND = "background"
    MISSING = "missing"


@dataclass(frozen=True)
class LabelledImage:
    """One image as an annotation format describes it.

    ``name`` is the image's path relative to the dataset root as the format names it (stable across
    round trips, shown in reports); ``path`` is where its bytes are now. ``declared_size`` is (width,
    height) when the annotation states it (checked against the real image by validation). ``group`` keeps
    images of one board, part or batch together in splits; ``split`` is one the source already assigned.
    ``reference`` is where the bytes of the sample's golden sample are, when it has one: a defect-free image
    of the same design that the model compares the image with (DeepPCB's template of the board).
    """

    name: str
    path: Path
    boxes: tuple[Box, ...] = ()
    annotation: Annotation = Annotation.BOXES
    declared_size: tuple[int, int] | None = None
    group: str | None = None
    split: str | None = None
    reference: Path | None = None


@dataclass
class ImportedDataset:
    """An importer's result: ``classes`` in the source's own order, the images, and the problems that made it
    skip a record (each a :class:`DatasetFormatError` message naming file and line)."""

    format: str
    root: Path
    classes: list[str]
    images: list[LabelledImage]
    problems: list[str] = field(default_factory=list)
