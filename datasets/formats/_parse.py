"""Reading annotation files so that no parser exception escapes: every failure becomes a
:class:`DatasetFormatError` naming the file (and the line or element) and saying what was wrong, because the
person fixing the file needs that, not a traceback.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from lineqa.datasets.errors import DatasetFormatError
from lineqa.datasets.model import Annotation, Box


def read_text(path: Path) -> str:
    """The file as text (a UTF-8 byte-order mark, which Windows tools write, is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(path, f"not UTF-8 text (undecodable byte at offset {exc.start})") from None


def read_json(path: Path) -> object:
    """The parsed JSON document; a syntax error names its line."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None


def read_xml(path: Path) -> ET.Element:
    """The root element; a syntax error names its line.

    Python's expat refuses entity-expansion bombs, so an untrusted file cannot exhaust memory here.
    """
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).rsplit(": line", 1)[0]
        raise DatasetFormatError(path, f"not well-formed XML: {reason} (column {column + 1})", line) from None
    except OSError as exc:
        raise DatasetFormatError(path, f"cannot read the file: {exc.strerror or exc}") from None


def number(value: object, what: str, file: Path, line: int | None = None) -> float:
    """A finite number from JSON or text: the one place where ``float('abc')`` turns into a located error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise DatasetFormatError(file, f"{what} is not a number: {value!r}", line) from None
    else:
        raise DatasetFormatError(file, f"{what} is missing or not a number: {value!r}", line)
    if not math.isfinite(result):
        raise DatasetFormatError(file, f"{what} is not finite: {value!r}", line)
    return result


def status(boxes: Sequence[Box], skipped: int) -> Annotation:
    """The annotation status of an image whose records were read with ``skipped`` failures.

    An image whose every record failed is MISSING, not BACKGROUND: calling it defect-free would teach a model
    that its unread defects are good parts.
    """
    if boxes:
        return Annotation.BOXES
    return Annotation.MISSING if skipped else Annotation.BACKGROUND


def declared_size(width: object, height: object) -> tuple[int, int] | None:
    """(width, height) as an annotation states it (numbers or digits), or None when it states no usable size.

    Only advisory: validation compares it with the image itself, so a bad value is not worth skipping a record.
    """
    sides = _positive_int(width), _positive_int(height)
    return (sides[0], sides[1]) if sides[0] is not None and sides[1] is not None else None


def _positive_int(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
