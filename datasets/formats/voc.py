"""Pascal VOC XML: one ``<annotation>`` per image, with ``<filename>``, ``<size>`` and per box an ``<object>``
holding ``<name>`` and ``<bndbox>`` (xmin, ymin, xmax, ymax in pixels), in any folder layout: VOCdevkit's
Annotations/ and JPEGImages/, NEU-DET's ANNOTATIONS/ and IMAGES/, or side by side.

An XML is paired with the image its ``<filename>`` names; when no file has that name (NEU-DET writes some without
``.jpg``), with the image of that stem, else of the XML's own stem. An XML without objects is BACKGROUND; an
image no XML describes is MISSING. VOC has no class list, so classes are sorted by name: ids then do not depend
on which file came first.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path, PurePosixPath

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._files import find_images, is_image, relative_name
from lineqa.datasets.formats._parse import declared_size, number, read_xml, status
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def read_voc(path: Path) -> ImportedDataset:
    """Import every VOC XML under the folder ``path`` and every image there."""
    if not path.is_dir():
        raise DatasetFormatError(path, "a Pascal VOC dataset is a folder holding .xml files and images")
    image_files = find_images(path)
    index = _ImageIndex(image_files)
    problems: list[str] = []
    labelled: dict[Path, LabelledImage] = {}
    for xml in sorted(path.rglob("*.xml")):
        try:
            image = _read_annotation(xml, path, index, problems)
        except DatasetFormatError as exc:
            problems.append(str(exc))
            continue
        if image.path in labelled:
            problems.append(str(DatasetFormatError(xml, f"describes {image.name} again; the first XML is kept")))
            continue
        labelled[image.path] = image
    images = [
        labelled.get(file) or LabelledImage(relative_name(file, path), file, annotation=Annotation.MISSING)
        for file in image_files
    ]
    classes = sorted({box.class_name for image in images for box in image.boxes})
    return ImportedDataset("voc", path, classes, images, problems)


class _ImageIndex:
    """The dataset's images by file name and by stem, to pair XMLs with images wherever either lives."""

    def __init__(self, files: list[Path]) -> None:
        self._by_name: dict[str, list[Path]] = defaultdict(list)
        self._by_stem: dict[str, list[Path]] = defaultdict(list)
        for file in files:
            self._by_name[file.name].append(file)
            self._by_stem[file.stem].append(file)

    def pair(self, xml: Path, filename: str) -> Path:
        given = PurePosixPath(filename.replace("\\", "/")).name
        stem = PurePosixPath(given).stem if is_image(Path(given)) else given
        candidates = self._by_name.get(given) or self._by_stem.get(stem) or self._by_stem.get(xml.stem) or []
        if not candidates:
            raise DatasetFormatError(xml, f"no image found for <filename> {filename!r} (nor for {xml.stem!r})")
        return _closest(xml, candidates)


def _closest(xml: Path, candidates: list[Path]) -> Path:
    """The candidate sharing the longest folder path with the XML (VOC2007's image, not VOC2012's)."""

    def shared(image: Path) -> int:
        return len(Path(os.path.commonpath([xml, image])).parts)

    ranked = sorted(candidates, key=shared, reverse=True)
    if len(ranked) > 1 and shared(ranked[0]) == shared(ranked[1]):
        raise DatasetFormatError(xml, f"several images could be this XML's: {ranked[0]}, {ranked[1]}")
    return ranked[0]


def _read_annotation(xml: Path, root: Path, index: _ImageIndex, problems: list[str]) -> LabelledImage:
    annotation = read_xml(xml)
    if annotation.tag != "annotation":
        raise DatasetFormatError(xml, f"not a Pascal VOC annotation: the root element is <{annotation.tag}>")
    image = index.pair(xml, (annotation.findtext("filename") or "").strip())
    boxes: list[Box] = []
    skipped = 0
    for number_in_file, obj in enumerate(annotation.iterfind("object"), 1):
        try:
            boxes.append(_object_box(obj, f"<object> #{number_in_file}", xml))
        except DatasetFormatError as exc:
            problems.append(str(exc))
            skipped += 1
    name = relative_name(image, root)
    size = declared_size(annotation.findtext("size/width"), annotation.findtext("size/height"))
    return LabelledImage(name, image, tuple(boxes), status(boxes, skipped), declared_size=size)


def _object_box(obj: ET.Element, where: str, xml: Path) -> Box:
    class_name = (obj.findtext("name") or "").strip()
    if not class_name:
        raise DatasetFormatError(xml, f"{where}: no <name>")
    where = f"{where} ({class_name})"
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DatasetFormatError(xml, f"{where}: no <bndbox>")
    x1, y1, x2, y2 = (number(bndbox.findtext(corner), f"{where} <{corner}>", xml) for corner in _CORNERS)
    return Box(class_name, x1, y1, x2, y2)
