"""COCO object detection JSON: ``images``, ``annotations`` (``bbox`` = [x, y, width, height] in pixels) and
``categories``; one file per split, ``annotations/instances_<split>.json`` (``instances.json`` for no split).

An image entry without annotations is BACKGROUND. Two fields of our own ride on image entries (other COCO tools
ignore them): ``lineqa_group``, and ``lineqa_annotation: "missing"`` for an image nobody labelled, which COCO
cannot otherwise tell from a background image.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._files import first_existing, image_size, record_name
from lineqa.datasets.formats._output import Compose, Images, plan_export, write_input
from lineqa.datasets.formats._parse import declared_size, number, read_json, status
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage

_LISTS = ("images", "annotations", "categories")
Json = dict[str, object]
Key = int | str


def read_coco(path: Path) -> ImportedDataset:
    """Import one COCO file, or every ``*.json`` of a folder (of its ``annotations/`` folder when it has one)."""
    if path.is_dir():
        root = path
        folder = path / "annotations" if (path / "annotations").is_dir() else path
        files = sorted(folder.glob("*.json"))
        if not files:
            raise DatasetFormatError(path, "no COCO .json file here or in annotations/")
    else:
        files = [path]
        root = path.parent.parent if path.parent.name == "annotations" else path.parent
    classes: list[str] = []
    images: list[LabelledImage] = []
    problems: list[str] = []
    for file in files:
        images += _read_file(file, root, classes, problems)
    return ImportedDataset("coco", root, classes, images, problems)


def write_coco(
    classes: Sequence[str], images: Images, out: Path, *, overwrite: bool = False, compose: Compose | None = None
) -> Path:
    """Write ``out/annotations/instances_<split>.json`` and ``out/images/<split>/<name>``; return the
    annotations folder. Categories are numbered from 1 in ``classes`` order (0 is background to many tools).
    With ``compose``, each image is replaced by the model input built from it and its reference."""
    images, ids, paths = plan_export(classes, images, out, _image_folder, overwrite=overwrite, compose=compose)
    entries: dict[str | None, list[Json]] = {}
    annotations: dict[str | None, list[Json]] = {}
    for image, relative in zip(images, paths, strict=True):
        dest = out / relative
        write_input(image, dest, compose)
        width, height = image_size(dest)
        split_entries = entries.setdefault(image.split, [])
        split_annotations = annotations.setdefault(image.split, [])
        image_id = len(split_entries) + 1
        entry: Json = {"id": image_id, "file_name": image.name, "width": width, "height": height}
        entry["lineqa_group"] = image.group
        if image.annotation is Annotation.MISSING:
            entry["lineqa_annotation"] = Annotation.MISSING.value
        split_entries.append(entry)
        for box in image.boxes:
            split_annotations.append(
                {
                    "id": len(split_annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[box.class_name] + 1,
                    "bbox": [box.x1, box.y1, box.width, box.height],
                    "area": max(box.width, 0.0) * max(box.height, 0.0),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": index + 1, "name": name, "supercategory": ""} for index, name in enumerate(classes)]
    folder = out / "annotations"
    folder.mkdir(exist_ok=True)
    for split, split_entries in entries.items():
        document = {"images": split_entries, "annotations": annotations[split], "categories": categories}
        (folder / (f"instances_{split}.json" if split else "instances.json")).write_text(json.dumps(document))
    return folder


def _image_folder(split: str | None) -> str:
    """Where an export puts a split's images; unsplit ones sit in ``images/`` itself."""
    return f"images/{split}" if split else "images"


def _split_of(file: Path) -> tuple[str | None, str | None]:
    """(folder tag, split) from the file name: ``instances_train2017.json`` is tag ``train2017``, split
    ``train``; a file not named ``instances_*`` has no split."""
    if not file.stem.startswith("instances_"):
        return None, None
    tag = file.stem.removeprefix("instances_")
    return tag, tag[:-4] if re.fullmatch(r".+\d{4}", tag) else tag


def _read_file(file: Path, root: Path, classes: list[str], problems: list[str]) -> list[LabelledImage]:
    data = read_json(file)
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in _LISTS):
        raise DatasetFormatError(file, "not a COCO file: needs the lists 'images', 'annotations' and 'categories'")
    categories = _categories(data["categories"], file, classes, problems)
    tag, split = _split_of(file)
    folders = [root / "images" / tag, root / "images" / split, root / tag] if tag and split else []
    folders += [root / "images", file.parent, root]
    entries: dict[Key, LabelledImage] = {}
    for index, record in enumerate(data["images"]):
        try:
            image_id, image = _image_entry(record, f"images[{index}]", file, root, folders, entries)
        except DatasetFormatError as exc:
            problems.append(str(exc))
            continue
        entries[image_id] = dataclasses.replace(image, split=split)
    boxes: dict[Key, list[Box]] = {image_id: [] for image_id in entries}
    skipped: Counter[Key] = Counter()
    for index, record in enumerate(data["annotations"]):
        try:
            image_id, box = _annotation(record, f"annotations[{index}]", file, categories, entries)
        except DatasetFormatError as exc:
            problems.append(str(exc))
            owner = record.get("image_id") if isinstance(record, dict) else None
            if isinstance(owner, (int, str)) and owner in entries:
                skipped[owner] += 1
            continue
        boxes[image_id].append(box)
    images = []
    for image_id, image in entries.items():
        found = tuple(boxes[image_id])
        missing = image.annotation is Annotation.MISSING
        annotation = Annotation.MISSING if missing else status(found, skipped[image_id])
        images.append(dataclasses.replace(image, boxes=found, annotation=annotation))
    return images


def _categories(records: list[object], file: Path, classes: list[str], problems: list[str]) -> dict[Key, str]:
    """Class names by category id; new names join ``classes`` in the file's order."""
    names: dict[Key, str] = {}
    for index, record in enumerate(records):
        category_id = _key(record, "id")
        name = record.get("name") if isinstance(record, dict) else None
        if category_id is None or not isinstance(name, str) or not name or category_id in names:
            why = "a duplicate 'id'" if category_id in names else "needs an 'id' and a 'name'"
            problems.append(str(DatasetFormatError(file, f"categories[{index}]: {why}")))
            continue
        names[category_id] = name
        if name not in classes:
            classes.append(name)
    return names


def _image_entry(
    record: object, where: str, file: Path, root: Path, folders: list[Path], known: dict[Key, LabelledImage]
) -> tuple[Key, LabelledImage]:
    image_id = _key(record, "id")
    if not isinstance(record, dict) or image_id is None:
        raise DatasetFormatError(file, f"{where}: needs an 'id' (a number or text)")
    if image_id in known:
        raise DatasetFormatError(file, f"{where}: duplicate image id {image_id!r}")
    file_name = record.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise DatasetFormatError(file, f"{where}: needs a 'file_name'")
    found = first_existing([folder / file_name for folder in folders], root)
    if found is None:
        raise DatasetFormatError(file, f"{where}: image {file_name!r} not found in the dataset folder {root}")
    group = record.get("lineqa_group")
    if group is not None and not isinstance(group, str):
        raise DatasetFormatError(file, f"{where}: 'lineqa_group' must be text")
    missing = record.get("lineqa_annotation") == Annotation.MISSING.value
    annotation = Annotation.MISSING if missing else Annotation.BACKGROUND  # until its boxes are read
    name = record_name(file_name, found, root)
    size = declared_size(record.get("width"), record.get("height"))
    return image_id, LabelledImage(name, found, annotation=annotation, declared_size=size, group=group)


def _annotation(
    record: object, where: str, file: Path, categories: dict[Key, str], images: dict[Key, LabelledImage]
) -> tuple[Key, Box]:
    if not isinstance(record, dict):
        raise DatasetFormatError(file, f"{where}: not an object")
    image_id = _key(record, "image_id")
    if image_id is None or image_id not in images:
        raise DatasetFormatError(file, f"{where}: 'image_id' {record.get('image_id')!r} names no image of this file")
    category_id = _key(record, "category_id")
    if category_id is None or category_id not in categories:
        raise DatasetFormatError(file, f"{where}: unknown 'category_id' {record.get('category_id')!r}")
    bbox = record.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise DatasetFormatError(file, f"{where}: 'bbox' must be [x, y, width, height], found {bbox!r}")
    x, y, w, h = (number(value, f"{where} bbox {what}", file) for value, what in zip(bbox, "xywh", strict=True))
    return image_id, Box(categories[category_id], x, y, x + w, y + h)


def _key(record: object, field: str) -> Key | None:
    """An id field (COCO ids are numbers, some tools write text); None when absent or of another type."""
    value = record.get(field) if isinstance(record, dict) else None
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None
