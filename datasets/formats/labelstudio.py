"""Label Studio's JSON export: a list of tasks, each with ``data`` (the image URL, under ``image`` or whatever
the labelling config calls it) and ``annotations`` whose ``result`` holds ``rectanglelabels`` regions; a region's
``x``, ``y``, ``width`` and ``height`` are percent of the image's ``original_width`` and ``original_height``.

Images are looked up below the JSON's folder: by a local-files URL's ``?d=`` path or the URL's path, else by
file name, also without the 8-character prefix Label Studio gives uploaded files. A task whose annotation has
an empty result is BACKGROUND; a task nobody annotated (or whose annotations were all cancelled) is MISSING. The
export holds no class list, so classes are sorted by name.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.formats._files import first_existing, image_size, relative_name
from lineqa.datasets.formats._parse import number, read_json, status
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_REGION = ("x", "y", "width", "height")


def read_labelstudio(path: Path) -> ImportedDataset:
    """Import a Label Studio JSON export (or the folder holding exactly one)."""
    file = path if path.is_file() else _export_file(path)
    tasks = read_json(file)
    if not isinstance(tasks, list):
        raise DatasetFormatError(file, "not a Label Studio JSON export: expected a list of tasks")
    images: list[LabelledImage] = []
    problems: list[str] = []
    for index, task in enumerate(tasks):
        try:
            images.append(_read_task(task, f"task [{index}]", file, problems))
        except DatasetFormatError as exc:
            problems.append(str(exc))
    classes = sorted({box.class_name for image in images for box in image.boxes})
    return ImportedDataset("labelstudio", file.parent, classes, images, problems)


def _export_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.json"))
    if len(files) != 1:
        raise DatasetFormatError(folder, f"expected one Label Studio .json export here, found {len(files)}")
    return files[0]


def _read_task(task: object, where: str, file: Path, problems: list[str]) -> LabelledImage:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise DatasetFormatError(file, f"{where}: not a task (needs 'data')")
    if "id" in task:
        where = f"{where} (id {task['id']})"
    image = _locate(task["data"], where, file)
    name = relative_name(image, file.parent)
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise DatasetFormatError(file, f"{where}: 'annotations' must be a list")
    done = [entry for entry in annotations if isinstance(entry, dict) and not entry.get("was_cancelled")]
    if not done:
        return LabelledImage(name, image, annotation=Annotation.MISSING)
    chosen = next((entry for entry in done if entry.get("ground_truth")), done[0])
    results = chosen.get("result") or []
    if not isinstance(results, list):
        raise DatasetFormatError(file, f"{where}: 'result' must be a list")
    boxes: list[Box] = []
    skipped = 0
    for index, result in enumerate(results):
        try:
            boxes.append(_region(result, f"{where} result [{index}]", file, image))
        except DatasetFormatError as exc:
            problems.append(str(exc))
            skipped += 1
    return LabelledImage(name, image, tuple(boxes), status(boxes, skipped))


def _locate(data: dict[str, object], where: str, file: Path) -> Path:
    """The image file a task's URL refers to, below the export's folder."""
    url = data.get("image")
    if not isinstance(url, str):
        url = next((value for value in data.values() if isinstance(value, str)), None)
    if url is None:
        raise DatasetFormatError(file, f"{where}: 'data' holds no image URL")
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")
    relative = unquote(local[0] if local else parsed.path).lstrip("/")
    file_name = PurePosixPath(relative).name
    names = dict.fromkeys([file_name, _UPLOAD_PREFIX.sub("", file_name)])
    root = file.parent
    found = first_existing(
        [root / relative] + [folder / name for name in names for folder in (root, root / "images")], root
    )
    if found is None:
        raise DatasetFormatError(file, f"{where}: image {url!r} not found in {root}")
    return found


def _region(result: object, where: str, file: Path, image: Path) -> Box:
    """One rectangle in pixels; its size in percent is of the original image (read from it when not given)."""
    if not isinstance(result, dict) or result.get("type") != "rectanglelabels":
        kind = result.get("type") if isinstance(result, dict) else result
        raise DatasetFormatError(file, f"{where}: only 'rectanglelabels' regions are imported, not {kind!r}")
    value = result.get("value")
    labels = value.get("rectanglelabels") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or not isinstance(labels, list)
        or len(labels) != 1
        or not isinstance(labels[0], str)
    ):
        raise DatasetFormatError(file, f"{where}: needs a 'value' with exactly one label in 'rectanglelabels'")
    if number(value.get("rotation", 0), f"{where} rotation", file) != 0:
        raise DatasetFormatError(file, f"{where}: a rotated rectangle is not an axis-aligned box")
    x, y, w, h = (number(value.get(key), f"{where} {key}", file) for key in _REGION)
    if "original_width" in result and "original_height" in result:
        width = number(result["original_width"], f"{where} original_width", file)
        height = number(result["original_height"], f"{where} original_height", file)
    else:
        width, height = (float(side) for side in image_size(image))
    return Box(labels[0], x / 100 * width, y / 100 * height, (x + w) / 100 * width, (y + h) / 100 * height)
