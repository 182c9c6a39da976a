"""Telling a dataset's annotation format from its files, so that a user can import without naming it.

A folder is recognised by its most specific marker first: a data.yaml or a DeepPCB list outranks stray JSON or
XML files that a YOLO or DeepPCB folder may also hold.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._parse import read_json, read_text
from lineqa.datasets.formats.deeppcb import LISTS


def detect_format(path: Path) -> str:
    """The key in :data:`lineqa.datasets.formats.READERS` of the format ``path`` (a file or a folder) is in."""
    if path.is_file():
        found = _file_format(path)
    elif path.is_dir():
        found = _folder_format(path)
    else:
        raise DatasetFormatError(path, "no such file or folder")
    if found is None:
        raise DatasetFormatError(
            path,
            "not a dataset in a known format: expected a YOLO data.yaml, a COCO or Label Studio JSON file, "
            f"a CVAT XML file, a folder of Pascal VOC XML files, or a DeepPCB {' or '.join(LISTS)}",
        )
    return found


def _file_format(file: Path) -> str | None:
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yolo"
    if suffix == ".json":
        return _json_format(file)
    if suffix == ".xml":
        return "cvat" if _root_tag(file) == "annotations" else None
    return "deeppcb" if suffix == ".txt" and _is_deeppcb_list(file) else None


def _folder_format(folder: Path) -> str | None:
    if (folder / "data.yaml").is_file():
        return "yolo"
    if any(_is_deeppcb_list(folder / name) for name in LISTS):
        return "deeppcb"
    if _root_tag(folder / "annotations.xml") == "annotations":
        return "cvat"
    for file in [*sorted(folder.glob("*.json")), *sorted(folder.glob("annotations/*.json"))]:
        found = _json_format(file)
        if found is not None:
            return found
    return "voc" if any(_root_tag(file) == "annotation" for file in folder.rglob("*.xml")) else None


def _json_format(file: Path) -> str | None:
    document = read_json(file)
    if isinstance(document, dict) and "images" in document and "annotations" in document:
        return "coco"
    if isinstance(document, list) and all(isinstance(task, dict) and "data" in task for task in document[:1]):
        return "labelstudio"
    return None


def _root_tag(file: Path) -> str | None:
    """The root element's tag, read without parsing the rest; None for a missing or broken file."""
    try:
        for _, element in ET.iterparse(file, events=("start",)):
            return str(element.tag)
    except (ET.ParseError, OSError):
        return None
    return None


def _is_deeppcb_list(file: Path) -> bool:
    """Whether the first line of ``file`` is an ``<image> <annotation>.txt`` pair."""
    if not file.is_file():
        return False
    try:
        first = next((line for line in read_text(file).splitlines() if line.strip()), "")
    except DatasetFormatError:
        return False
    fields = first.split()
    return len(fields) == 2 and fields[1].endswith(".txt")
