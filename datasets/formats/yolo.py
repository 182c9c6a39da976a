"""Ultralytics YOLO detection datasets: a ``data.yaml`` naming the classes and each split's image folders (or
list files), and beside each image a label file of ``class cx cy w h`` rows normalised to the image size.

An image is named relative to its split's folder (``images/train/a/b.png`` is ``a/b.png`` in split ``train``),
so that its name survives an export to another format and back. An image without a label file is MISSING, one
with an empty label file BACKGROUND. What YOLO cannot hold (an image's group; that an image had no split)
travels in a ``lineqa:`` mapping of the data.yaml, keyed by the image's path there; Ultralytics ignores it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from lineqa.datasets.errors import DatasetError, DatasetFormatError
from lineqa.datasets.formats._files import find_images, first_existing, image_size, inside, relative_name
from lineqa.datasets.formats._output import Compose, Images, plan_export, write_input
from lineqa.datasets.formats._parse import number, read_text, status
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage

SPLITS = ("train", "val", "test")
_ROW_FIELDS = ("class", "cx", "cy", "w", "h")
Row = tuple[str, float, float, float, float]


def read_yolo(path: Path) -> ImportedDataset:
    """Import a YOLO dataset from its data.yaml (or the folder holding one)."""
    data_yaml = path / "data.yaml" if path.is_dir() else path
    config = _load_config(data_yaml)
    classes = _class_names(config, data_yaml)
    root = _dataset_root(config, data_yaml)
    groups, unsplit = _lineqa_extras(config, data_yaml)
    if not any(split in config for split in SPLITS):
        raise DatasetFormatError(data_yaml, f"names no split: needs at least one of {', '.join(SPLITS)}")
    images: list[LabelledImage] = []
    problems: list[str] = []
    split_of: dict[Path, str] = {}
    for split in SPLITS:
        for image_path, name in _split_images(config.get(split), split, root, data_yaml, problems):
            if image_path in split_of:
                first = split_of[image_path]
                problems.append(str(DatasetFormatError(image_path, f"listed in {first} and {split}; kept in {first}")))
                continue
            split_of[image_path] = split
            key = relative_name(image_path, root)
            try:
                boxes, annotation = _read_labels(image_path, classes, problems)
            except DatasetFormatError as exc:
                problems.append(str(exc))
                continue
            kept_split = None if key in unsplit else split
            images.append(LabelledImage(name, image_path, boxes, annotation, group=groups.get(key), split=kept_split))
    problems += _orphan_labels(split_of)
    return ImportedDataset("yolo", root, classes, images, problems)


def _orphan_labels(image_paths: Iterable[Path]) -> list[str]:
    """Label files beside the dataset's labels whose image is missing: their defects would be lost silently."""
    expected = {_label_path(image) for image in image_paths}
    folders = {label.parent for label in expected}
    orphans = sorted(label for folder in folders for label in folder.glob("*.txt") if label not in expected)
    return [str(DatasetFormatError(label, "label file without an image (the image is missing)")) for label in orphans]


def write_yolo(
    classes: Sequence[str], images: Images, out: Path, *, overwrite: bool = False, compose: Compose | None = None
) -> Path:
    """Write a dataset ready for ``ultralytics.YOLO(...).train(data=...)`` into ``out``; return its data.yaml.

    Images without a split go to ``train``, recorded in ``lineqa.unsplit`` so that a re-import gives them back
    without one. A MISSING image gets no label file, which Ultralytics trains on as a defect-free image: leave
    MISSING images out of a training export. With ``compose``, each image is replaced by the model input built
    from it and its reference (see :func:`~lineqa.datasets.formats._output.input_images`).
    """
    unknown = sorted({image.split for image in images if image.split is not None} - set(SPLITS))
    if unknown:
        raise DatasetError(f"YOLO holds only the splits {', '.join(SPLITS)}; rename {', '.join(unknown)} first")
    images, ids, paths = plan_export(classes, images, out, _image_folder, overwrite=overwrite, compose=compose)
    groups: dict[str, str] = {}
    unsplit: list[str] = []
    for image, relative in zip(images, paths, strict=True):
        dest = out / relative
        write_input(image, dest, compose)
        if image.annotation is not Annotation.MISSING:
            label = _label_path(dest)
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(_label_text(image.boxes, ids, dest))
        if image.group is not None:
            groups[relative] = image.group
        if image.split is None:
            unsplit.append(relative)
    present = {image.split or "train" for image in images}
    config: dict[str, object] = {"path": str(out.resolve())}
    config.update({split: f"images/{split}" for split in SPLITS if split in present})
    config.update({"nc": len(classes), "names": dict(enumerate(classes))})
    extras = {key: value for key, value in (("groups", groups), ("unsplit", unsplit)) if value}
    if extras:
        config["lineqa"] = extras
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return data_yaml


def _image_folder(split: str | None) -> str:
    """Where an export puts a split's images; unsplit ones train."""
    return f"images/{split or 'train'}"


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    folders = [index for index, part in enumerate(parts[:-1]) if part == "images"]
    if folders:
        parts[folders[-1]] = "labels"
    return Path(*parts).with_suffix(".txt")


def _label_text(boxes: Sequence[Box], ids: dict[str, int], image: Path) -> str:
    """Label rows with 10 decimals: pixel boxes of any practical image size come back within 1e-3 px."""
    if not boxes:
        return ""
    width, height = image_size(image)
    return "".join(
        f"{ids[box.class_name]} {(box.x1 + box.x2) / 2 / width:.10f} {(box.y1 + box.y2) / 2 / height:.10f} "
        f"{box.width / width:.10f} {box.height / height:.10f}\n"
        for box in boxes
    )


def _read_labels(image: Path, classes: list[str], problems: list[str]) -> tuple[tuple[Box, ...], Annotation]:
    """An image's boxes and status; a bad row is a problem, an unreadable image (needed for its size) an error."""
    label = _label_path(image)
    if not label.is_file():
        return (), Annotation.MISSING
    rows: list[Row] = []
    skipped = 0
    for line_no, line in enumerate(read_text(label).splitlines(), 1):
        if line.strip():
            try:
                rows.append(_parse_row(line, classes, label, line_no))
            except DatasetFormatError as exc:
                problems.append(str(exc))
                skipped += 1
    width, height = image_size(image) if rows else (0, 0)
    boxes = tuple(
        Box(class_name, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        for class_name, cx, cy, w, h in rows
    )
    return boxes, status(boxes, skipped)


def _parse_row(line: str, classes: list[str], label: Path, line_no: int) -> Row:
    fields = line.split()
    if len(fields) != len(_ROW_FIELDS):
        raise DatasetFormatError(label, f"expected 5 values 'class cx cy w h', found {len(fields)}", line_no)
    try:
        class_id = int(fields[0])
    except ValueError:
        raise DatasetFormatError(label, f"class id {fields[0]!r} is not an integer", line_no) from None
    if not 0 <= class_id < len(classes):
        known = f"ids 0-{len(classes) - 1}" if classes else "no classes"
        raise DatasetFormatError(label, f"unknown class id {class_id} (data.yaml names {known})", line_no)
    values = zip(fields[1:], _ROW_FIELDS[1:], strict=True)
    cx, cy, w, h = (number(value, what, label, line_no) for value, what in values)
    return classes[class_id], cx, cy, w, h


def _load_config(data_yaml: Path) -> dict[str, object]:
    try:
        config = yaml.safe_load(read_text(data_yaml))
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise DatasetFormatError(data_yaml, f"not valid YAML: {exc.problem}", line) from None
    except yaml.YAMLError as exc:
        raise DatasetFormatError(data_yaml, f"not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise DatasetFormatError(data_yaml, "expected a mapping with 'names' and the train/val/test splits")
    return {str(key): value for key, value in config.items()}


def _class_names(config: dict[str, object], data_yaml: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        if not all(isinstance(key, int) for key in names) or sorted(names) != list(range(len(names))):
            raise DatasetFormatError(data_yaml, "'names' must map the ids 0, 1, ... n-1 to class names")
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list):
        raise DatasetFormatError(data_yaml, "'names' is missing: give a list of class names or a mapping id: name")
    if not all(isinstance(name, (str, int, float)) and not isinstance(name, bool) for name in names):
        raise DatasetFormatError(data_yaml, "'names' must hold class names (text)")
    classes = [str(name) for name in names]
    if len(set(classes)) != len(classes):
        raise DatasetFormatError(data_yaml, f"'names' lists a class twice: {classes}")
    nc = config.get("nc")
    if nc is not None and nc != len(classes):
        raise DatasetFormatError(data_yaml, f"'nc' is {nc} but 'names' lists {len(classes)} classes")
    return classes


def _dataset_root(config: dict[str, object], data_yaml: Path) -> Path:
    """Where split entries are relative to: ``path`` (relative to the data.yaml), else the data.yaml's folder;
    also the data.yaml's folder when ``path`` no longer exists, so that a moved dataset still imports."""
    given = config.get("path")
    if given is None:
        return data_yaml.parent
    if not isinstance(given, str):
        raise DatasetFormatError(data_yaml, f"'path' must be a folder, found {given!r}")
    root = data_yaml.parent / Path(given).expanduser()
    return root if root.is_dir() else data_yaml.parent


def _lineqa_extras(config: dict[str, object], data_yaml: Path) -> tuple[dict[str, str], set[str]]:
    extras = config.get("lineqa") or {}
    if not isinstance(extras, dict):
        raise DatasetFormatError(data_yaml, "'lineqa' must be a mapping")
    groups = extras.get("groups") or {}
    unsplit = extras.get("unsplit") or []
    if not isinstance(groups, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in groups.items()):
        raise DatasetFormatError(data_yaml, "'lineqa.groups' must map image paths to group names")
    if not isinstance(unsplit, list) or not all(isinstance(key, str) for key in unsplit):
        raise DatasetFormatError(data_yaml, "'lineqa.unsplit' must list image paths")
    return groups, set(unsplit)


def _split_images(
    value: object, split: str, root: Path, data_yaml: Path, problems: list[str]
) -> list[tuple[Path, str]]:
    """(image file, name) of a split given as a folder, a list file, or a list of them."""
    entries = [value] if isinstance(value, str) else [] if value is None else value
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise DatasetFormatError(data_yaml, f"'{split}' must be a folder, a list file, or a list of them")
    found: list[tuple[Path, str]] = []
    for entry in entries:
        target = Path(os.path.normpath(root / Path(entry).expanduser()))
        if not inside(target, root):
            problems.append(str(DatasetFormatError(data_yaml, f"'{split}': {entry!r} is outside the dataset {root}")))
        elif target.is_dir():
            found += [(image, relative_name(image, target)) for image in find_images(target)]
        elif target.is_file():
            found += _listed_images(target, root, problems)
        else:
            problems.append(str(DatasetFormatError(data_yaml, f"'{split}': {entry!r} not found (looked for {target})")))
    return found


def _listed_images(list_file: Path, root: Path, problems: list[str]) -> list[tuple[Path, str]]:
    """A list file's images: ``./x`` relative to the list (as Ultralytics reads it), others to the root."""
    found: list[tuple[Path, str]] = []
    for line_no, line in enumerate(read_text(list_file).splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        image = first_existing([list_file.parent / entry[2:] if entry.startswith("./") else root / entry], root)
        if image is not None:
            found.append((image, relative_name(image, root)))
        else:
            problems.append(str(DatasetFormatError(list_file, f"image {entry!r} not found in {root}", line_no)))
    return found
