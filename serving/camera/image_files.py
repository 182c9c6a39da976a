"""Image files as the camera agent takes them: which files count as images, in which order, and the capture
of a file's bytes (unchanged, so the gateway judges exactly what is on disk)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Capture, CapturedFile
from lineqa.vision.image import ImageEncoding, read_header

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
_PB_ENCODING = {ImageEncoding.JPEG: pb.IMAGE_ENCODING_JPEG, ImageEncoding.PNG: pb.IMAGE_ENCODING_PNG}


def is_image_name(path: Path) -> bool:
    """A JPEG or PNG by its suffix, and not hidden (a dot file is how many copiers name a file in transit)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def natural_key(path: Path) -> list[tuple[int, int | str]]:
    """Sort key putting ``img2`` before ``img10``: digit runs compare as numbers, the rest case-insensitively."""
    key: list[tuple[int, int | str]] = []
    for part in path.parts:
        for token in re.split(r"(\d+)", part):
            if token:
                key.append((0, int(token)) if token.isdigit() else (1, token.lower()))
        key.append((2, ""))  # a folder boundary sorts before any continuation of a longer name
    return key


def image_capture(data: bytes, origin: str, part_id: str, file: CapturedFile | None = None) -> Capture:
    """A capture of an image file's bytes. Raises :class:`~lineqa.vision.errors.ImageError` unless the header
    is a JPEG's or a PNG's."""
    header = read_header(data)
    return Capture(
        data,
        _PB_ENCODING[header.encoding],
        part_id,
        datetime.now(timezone.utc),
        origin,
        width=header.width,
        height=header.height,
        file=file,
    )
