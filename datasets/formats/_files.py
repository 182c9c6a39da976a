"""Finding image files, reading their size cheaply, and naming them the same way in every format."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import cv2

from lineqa.datasets.errors import DatasetFormatError
from lineqa.vision.errors import CorruptImageError, UnsupportedEncodingError
from lineqa.vision.image import read_header

# The image files the importers look for: what Ultralytics trains on, less video and the rarest formats.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
# Enough for a JPEG's frame header behind ordinary EXIF/ICC segments; a longer preamble rereads the whole file.
_HEAD_BYTES = 64 * 1024


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` at any depth, sorted, so that imports are reproducible."""
    return sorted(path for path in folder.rglob("*") if is_image(path) and path.is_file())


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header for JPEG and PNG (no decoding: importing thousands
    of images must stay fast), by decoding with OpenCV for the other formats."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
        try:
            header = read_header(head)
        except CorruptImageError:
            if len(head) < _HEAD_BYTES:
                raise
            header = read_header(path.read_bytes())
        return header.width, header.height
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the image: {exc.strerror or exc}") from None
    except CorruptImageError as exc:
        raise DatasetFormatError(path, f"unreadable image: {exc}") from None
    except UnsupportedEncodingError:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DatasetFormatError(path, "not an image OpenCV can read") from None
        return int(image.shape[1]), int(image.shape[0])


def is_safe_name(name: str) -> bool:
    """Whether an image name can be used below an output folder without escaping it (nor holding a Windows
    ``\\``, which would name another file here)."""
    parts = PurePosixPath(name).parts
    return bool(parts) and not PurePosixPath(name).is_absolute() and ".." not in parts and "\\" not in name


def record_name(given: str, found: Path, root: Path) -> str:
    """The name of an image a record refers to: the record's own name when it is a safe relative path (so that
    it survives a round trip), else where the file was found relative to the dataset root."""
    return given if is_safe_name(given) else relative_name(found, root)


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, with ``/`` and without ``..`` (which :func:`inside` has ruled out)."""
    return Path(os.path.relpath(path, root)).as_posix()


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in the dataset folder, judged on the path as written (``..`` resolved, symbolic
    links not): an annotation file must not pull files from elsewhere on the server into a tenant's dataset."""
    return Path(os.path.normpath(path.absolute())).is_relative_to(os.path.normpath(root.absolute()))


def first_existing(candidates: list[Path], root: Path) -> Path | None:
    """The first candidate that is a file inside the dataset folder ``root``, with ``..`` resolved first (so
    that ``link/..`` cannot step out through a symbolic link)."""
    normal = (Path(os.path.normpath(path)) for path in candidates)
    return next((path for path in normal if inside(path, root) and path.is_file()), None)
