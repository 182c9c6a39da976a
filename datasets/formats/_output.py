"""What both exporters must get right before writing: a safe output folder, known classes, unique file
names, images placed without copying bytes when a hard link will do, and, for a model that compares each
image with its reference, that model's input built from the pair instead of the image."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats._files import is_safe_name
from lineqa.datasets.model import LabelledImage
from lineqa.vision.errors import VisionError
from lineqa.vision.image import load_image

Images = Sequence[LabelledImage]
Compose = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``compose(frame, reference)``: a model's input from an image and its reference, both decoded as the vision
core decodes frames (BGR ``uint8``, H x W x 3). The exporters call it and know nothing of the encoding, so
training data is built by the same function that builds the input at inspection time."""


def prepare_output(out: Path, images: Sequence[LabelledImage], *, overwrite: bool) -> None:
    """Make ``out`` an empty folder. A non-empty one is replaced only when asked, and never when it holds the
    source images, which replacing it would delete before they are copied."""
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DatasetError(f"{out}: the output folder is not empty (choose another, or ask to overwrite it)")
        target = out.resolve()
        sources = [path for image in images for path in (image.path, image.reference) if path is not None]
        if any(target in source.resolve().parents for source in sources):
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


def plan_export(
    classes: Sequence[str],
    images: Images,
    out: Path,
    folder_of: Callable[[str | None], str],
    *,
    overwrite: bool,
    compose: Compose | None,
) -> tuple[list[LabelledImage], dict[str, int], list[str]]:
    """Everything an exporter checks before it writes, in the order that leaves nothing half-written: the
    images as the export names them, class ids, each image's path in ``out``; then ``out`` made empty."""
    named = input_images(images, compose)
    ids = class_ids(classes, named)
    paths = destinations(named, folder_of)
    prepare_output(out, named, overwrite=overwrite)
    return named, ids, paths


def input_images(images: Images, compose: Compose | None) -> list[LabelledImage]:
    """The images as an export names them. With ``compose`` every image must have a reference: one without
    would be trained on as if it had none, or be missing from the data unnoticed, so the export stops and
    names it. Composed inputs are written as PNG (``.png`` replaces the name's suffix): lossless, since JPEG
    would blur the difference between image and reference, the very signal the model learns from."""
    if compose is None:
        return list(images)
    lacking = [image.name for image in images if image.reference is None]
    if lacking:
        more = f" (and {len(lacking) - 3} more)" if len(lacking) > 3 else ""
        named = ", ".join(lacking[:3])
        raise DatasetError(f"a reference export needs a reference for every sample; none for {named}{more}")
    return [replace(image, name=str(PurePosixPath(image.name).with_suffix(".png"))) for image in images]


def write_input(image: LabelledImage, dest: Path, compose: Compose | None) -> None:
    """Place the image at ``dest``, or with ``compose`` the model input built from it and its reference
    (which must keep the image's size: the boxes are in its pixels)."""
    if compose is None:
        place_image(image.path, dest)
        return
    if image.reference is None:
        raise DatasetError(f"{image.name}: has no reference to build the model input from")
    try:
        frame = load_image(image.path)
        composed = compose(frame, load_image(image.reference))
    except VisionError as exc:
        raise DatasetError(f"{image.name}: cannot build the model input: {exc}") from None
    if composed.dtype != np.uint8 or composed.shape[:2] != frame.shape[:2]:
        raise DatasetError(
            f"{image.name}: the model input is {composed.dtype} {composed.shape}; the image's boxes need uint8 "
            f"of the image's size {frame.shape[:2]}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), composed):
        raise DatasetError(f"{dest}: cannot write the model input")
