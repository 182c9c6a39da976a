"""CVAT for images 1.1 XML (the ``annotations.xml`` of a CVAT export): the labels under ``<meta>``, then an
``<image name= width= height=>`` per image holding its shapes; a ``<box>`` gives its corners ``xtl ytl xbr ybr``
in pixels. Images are looked up in the XML's ``images/`` folder, then beside it.

An ``<image>`` without shapes is BACKGROUND. An image-level ``<tag>`` says nothing about where a defect is and is
passed over; any other shape (polygon, points, a rotated box) is not an axis-aligned box and is reported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._files import first_existing, record_name
from lineqa.datasets.formats._parse import declared_size, number, read_xml, status
from lineqa.datasets.model import Box, ImportedDataset, LabelledImage

_CORNERS = ("xtl", "ytl", "xbr", "ybr")


def read_cvat(path: Path) -> ImportedDataset:
    """Import a CVAT XML file (or the folder holding ``annotations.xml``)."""
    file = path / "annotations.xml" if path.is_dir() else path
    document = read_xml(file)
    if document.tag != "annotations" or (document.findtext("version") or "").strip() != "1.1":
        raise DatasetFormatError(file, "not CVAT for images 1.1: expected <annotations> with <version>1.1</version>")
    names = (label.findtext("name") or "" for label in document.iterfind("meta/*/labels/label"))
    labels = _Labels(list(dict.fromkeys(name.strip() for name in names if name.strip())))
    images: list[LabelledImage] = []
    problems: list[str] = []
    for number_in_file, element in enumerate(document.iterfind("image"), 1):
        try:
            images.append(_read_image(element, f"<image> #{number_in_file}", file, labels, problems))
        except DatasetFormatError as exc:
            problems.append(str(exc))
    return ImportedDataset("cvat", file.parent, labels.classes, images, problems)


class _Labels:
    """The task's labels when ``<meta>`` lists them (a box of another label is an error), else the labels in
    the order boxes use them."""

    def __init__(self, declared: list[str]) -> None:
        self.classes = declared
        self._fixed = bool(declared)

    def check(self, label: str, where: str, file: Path) -> str:
        if label not in self.classes:
            if self._fixed:
                raise DatasetFormatError(file, f"{where}: label {label!r} is not one of the task's labels")
            self.classes.append(label)
        return label


def _read_image(element: ET.Element, where: str, file: Path, labels: _Labels, problems: list[str]) -> LabelledImage:
    name = element.get("name") or ""
    if not name:
        raise DatasetFormatError(file, f"{where}: no name attribute")
    where = f"{where} ({name})"
    folder = file.parent
    found = first_existing([folder / "images" / name, folder / name], folder)
    if found is None:
        raise DatasetFormatError(file, f"{where}: image not found in {folder / 'images'} nor in {folder}")
    boxes: list[Box] = []
    skipped = 0
    for number_in_image, shape in enumerate(element, 1):
        if shape.tag == "tag":
            continue
        try:
            boxes.append(_box(shape, f"{where} <{shape.tag}> #{number_in_image}", file, labels))
        except DatasetFormatError as exc:
            problems.append(str(exc))
            skipped += 1
    size = declared_size(element.get("width"), element.get("height"))
    return LabelledImage(record_name(name, found, folder), found, tuple(boxes), status(boxes, skipped), size)


def _box(shape: ET.Element, where: str, file: Path, labels: _Labels) -> Box:
    if shape.tag != "box":
        raise DatasetFormatError(file, f"{where}: only boxes are imported")
    if number(shape.get("rotation", "0"), f"{where} rotation", file) != 0:
        raise DatasetFormatError(file, f"{where}: a rotated box is not an axis-aligned box")
    x1, y1, x2, y2 = (number(shape.get(corner), f"{where} {corner}", file) for corner in _CORNERS)
    label = (shape.get("label") or "").strip()
    if not label:
        raise DatasetFormatError(file, f"{where}: no label")
    return Box(labels.check(label, where, file), x1, y1, x2, y2)
