"""DeepPCB's own text format (tangsanli5201/DeepPCB): ``trainval.txt`` and ``test.txt`` list ``<image>
<annotation>`` pairs relative to their folder, and each annotation file holds one defect per line, ``x1 y1 x2
y2 type`` in pixels, type 1 to 6.

The listed image path has no suffix of its own: ``group20085/20085/20085000.jpg`` stands for the defective image
``20085000_test.jpg`` beside the template ``20085000_temp.jpg``; the defective one is imported. The board's
``group<G>`` folder is its group, so that splits keep images of one board design together.

The template is a defect-free, aligned image of the same board: the golden sample a reference-based model
compares the board with. By default (``references``) it rides on the defective board as its reference. With
``templates``, each template is imported as a sample too, a background image (a known-good part) in the same
group: hard negatives for training, and the good parts a false-reject rate is measured on. The two combine;
the catalog stores a template's bytes once either way.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path, PurePosixPath

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._files import first_existing, relative_name
from lineqa.datasets.formats._parse import number, read_text, status
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage

CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")  # type ids 1..6
LISTS = ("trainval.txt", "test.txt")
_GROUP = re.compile(r"group\d+")
# The upstream README says commas separate the values; the files use spaces. Both are read.
_SEPARATORS = re.compile(r"[\s,]+")
_CORNERS = ("x1", "y1", "x2", "y2")


def read_deeppcb(path: Path, *, templates: bool = False, references: bool = True) -> ImportedDataset:
    """Import a DeepPCB list file, or both lists of a ``PCBData`` folder (the images of each, once): each
    defective board with its template as reference (unless not ``references``), and with ``templates`` each
    template as a good part of its own."""
    lists = [path] if path.is_file() else [path / name for name in LISTS if (path / name).is_file()]
    if not lists:
        raise DatasetFormatError(path, f"no DeepPCB list here: expected {' or '.join(LISTS)}")
    root = lists[0].parent
    images: dict[Path, LabelledImage] = {}
    problems: list[str] = []
    for list_file in lists:
        for line_no, line in enumerate(read_text(list_file).splitlines(), 1):
            if not line.strip():
                continue
            try:
                image = _read_pair(line, root, problems, list_file, line_no)
            except DatasetFormatError as exc:
                problems.append(str(exc))
                continue
            if image.path in images:
                problems.append(str(DatasetFormatError(list_file, f"{image.name} is listed again", line_no)))
                continue
            template = image.path.with_name(image.path.name.replace("_test.jpg", "_temp.jpg"))
            found = template.is_file()
            images[image.path] = replace(image, reference=template) if references and found else image
            if templates and found:
                name = relative_name(template, root)
                images[template] = LabelledImage(name, template, (), Annotation.BACKGROUND, group=image.group)
    return ImportedDataset("deeppcb", root, list(CLASSES), list(images.values()), problems)


def _read_pair(line: str, root: Path, problems: list[str], list_file: Path, line_no: int) -> LabelledImage:
    fields = line.split()
    if len(fields) != 2:
        raise DatasetFormatError(list_file, f"expected '<image> <annotation>', found {len(fields)} values", line_no)
    listed, annotation_name = (PurePosixPath(field) for field in fields)
    defective = listed.with_name(f"{listed.stem}_test.jpg")
    image = first_existing([root / defective], root)
    annotation = first_existing([root / annotation_name], root)
    if image is None or annotation is None:
        missing = defective if image is None else annotation_name
        raise DatasetFormatError(list_file, f"{missing} not found in {root}", line_no)
    boxes: list[Box] = []
    skipped = 0
    for box_line_no, box_line in enumerate(read_text(annotation).splitlines(), 1):
        if box_line.strip():
            try:
                boxes.append(_parse_box(box_line, annotation, box_line_no))
            except DatasetFormatError as exc:
                problems.append(str(exc))
                skipped += 1
    group = next((part for part in listed.parts if _GROUP.fullmatch(part)), None)
    return LabelledImage(relative_name(image, root), image, tuple(boxes), status(boxes, skipped), group=group)


def _parse_box(line: str, annotation: Path, line_no: int) -> Box:
    fields = _SEPARATORS.split(line.strip())
    if len(fields) != 5:
        raise DatasetFormatError(annotation, f"expected 5 values 'x1 y1 x2 y2 type', found {len(fields)}", line_no)
    corners = zip(fields[:4], _CORNERS, strict=True)
    x1, y1, x2, y2 = (number(value, corner, annotation, line_no) for value, corner in corners)
    kind = int(fields[4]) if fields[4].isdecimal() else 0
    if not 1 <= kind <= len(CLASSES):
        raise DatasetFormatError(annotation, f"unknown defect type {fields[4]!r} (DeepPCB's types are 1-6)", line_no)
    return Box(CLASSES[kind - 1], x1, y1, x2, y2)
