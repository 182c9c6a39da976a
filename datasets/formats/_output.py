"""What both exporters must get right before writing: a safe output folder, known classes, unique file
names, and images placed without copying bytes when a hard link will do."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats._files import is_safe_name
from lineqa.datasets.model import LabelledImage


def prepare_output(out: Path, images: Sequence[LabelledImage], *, overwrite: bool) -> None:
    """Make ``out`` an empty folder. A non-empty one is replaced only when asked, and never when it holds the
    source images, which replacing it would delete before they are copied."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"{out}: the output folder is not empty (choose another, or ask to overwrite it)")
        target = out.resolve()
        if any(target in image.path.resolve().parents for image in images):
            raise DatasetError(f"{out}: holds the images being exported; export to another folder")
        shutil.rmtree(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from None


def class_ids(classes: Sequence[str], images: Sequence[LabelledImage]) -> dict[str, int]:
    """Class ids (0-based, in ``classes`` order) by name; a box of an unlisted class would be lost, so it
    stops the export."""
    ids = {name: index for index, name in enumerate(classes)}
    if len(ids) != len(classes):
        raise DatasetError(f"duplicate class names in {list(classes)}")
    for image in images:
        for box in image.boxes:
            if box.class_name not in ids:
                raise DatasetError(f"{image.name}: box class {box.class_name!r} is not one of {list(classes)}")
    return ids


def destinations(images: Sequence[LabelledImage], folder_of: Callable[[str | None], str]) -> list[str]:
    """Each image's path in the output (``<folder of its split>/<name>``), refusing unsafe or clashing names."""
    paths: list[str] = []
    seen: set[str] = set()
    for image in images:
        path = f"{folder_of(image.split)}/{image.name}"
        if not (is_safe_name(image.name) and is_safe_name(path)):
            raise DatasetError(f"{image.name}: an image name (and split) must be a relative path inside the dataset")
        if path in seen:
            raise DatasetError(f"{image.name}: two images would be written to {path}")
        seen.add(path)
        paths.append(path)
    return paths


def place_image(source: Path, dest: Path) -> None:
    """Hard-link the image (no bytes copied, same file system), else copy it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        try:
            shutil.copyfile(source, dest)
        except OSError as exc:
            raise DatasetError(f"{source}: cannot copy the image: {exc.strerror or exc}") from None
