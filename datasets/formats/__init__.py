"""Annotation formats: a reader per format turns a dataset on disk into an :class:`ImportedDataset` (boxes in
pixels, classes by name); a writer per export format lays labelled images out for a training tool.

Readers skip a record they cannot parse and report it in ``problems``; they raise
:class:`~lineqa.datasets.errors.DatasetFormatError` only for a file they cannot read at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats._output import Compose, Images
from lineqa.datasets.formats.coco import read_coco, write_coco
from lineqa.datasets.formats.cvat import read_cvat
from lineqa.datasets.formats.deeppcb import read_deeppcb
from lineqa.datasets.formats.detect import detect_format
from lineqa.datasets.formats.labelstudio import read_labelstudio
from lineqa.datasets.formats.voc import read_voc
from lineqa.datasets.formats.yolo import read_yolo, write_yolo
from lineqa.datasets.model import ImportedDataset


class Writer(Protocol):
    """An exporter: writes ``images`` with ``classes`` into the folder ``out`` and returns the file or folder a
    training tool is pointed at; refuses a non-empty ``out`` unless ``overwrite``. With ``compose`` it writes,
    for each image, the model input ``compose`` builds from the image and its reference."""

    def __call__(
        self,
        classes: Sequence[str],
        images: Images,
        out: Path,
        *,
        overwrite: bool = False,
        compose: Compose | None = None,
    ) -> Path: ...


READERS: dict[str, Callable[[Path], ImportedDataset]] = {
    "yolo": read_yolo,
    "coco": read_coco,
    "voc": read_voc,
    "cvat": read_cvat,
    "labelstudio": read_labelstudio,
    "deeppcb": read_deeppcb,
}
WRITERS: dict[str, Writer] = {"yolo": write_yolo, "coco": write_coco}


def read_dataset(path: Path, format_name: str | None = None) -> ImportedDataset:
    """Import ``path`` in the format named, or else in the one detected from its files."""
    name = format_name or detect_format(path)
    reader = READERS.get(name)
    if reader is None:
        raise DatasetError(f"unknown dataset format {name!r}; known: {', '.join(READERS)}")
    return reader(path)


__all__ = ["READERS", "WRITERS", "Compose", "Writer", "detect_format", "read_dataset"]
