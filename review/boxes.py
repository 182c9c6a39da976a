"""Boxes as the box editor posts them: a JSON list of ``{"class": name, "box": [x1, y1, x2, y2]}`` in image
pixels. Parsed strictly here, for decisions and label fixes alike, with messages that say which box is wrong."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from lineqa.datasets.model import Box
from lineqa.review.errors import BadInputError

MAX_BOXES = 500


def parse_boxes(text: str, classes: Sequence[str], size: tuple[int, int] | None) -> tuple[Box, ...]:
    """The posted boxes, clipped to the image (``size`` = (width, height)) and checked against ``classes``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"boxes are not JSON: {exc}") from None
    if not isinstance(data, list) or len(data) > MAX_BOXES:
        raise BadInputError(f"boxes must be a list of at most {MAX_BOXES} objects")
    known = set(classes)
    out = []
    for index, item in enumerate(data, start=1):
        shaped = isinstance(item, dict) and isinstance(item.get("class"), str) and isinstance(item.get("box"), list)
        if not shaped:
            raise BadInputError(f"box {index}: expected {{'class': name, 'box': [x1, y1, x2, y2]}}")
        coords = item["box"]
        if len(coords) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in coords):
            raise BadInputError(f"box {index}: needs four finite numbers, got {coords!r}")
        if item["class"] not in known:
            raise BadInputError(f"box {index}: unknown class {item['class']!r} (known: {', '.join(classes)})")
        x1, y1, x2, y2 = (float(v) for v in coords)
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if size is not None:
            x1, x2 = max(0.0, x1), min(float(size[0]), x2)
            y1, y2 = max(0.0, y1), min(float(size[1]), y2)
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise BadInputError(f"box {index}: smaller than a pixel inside the image")
        out.append(Box(item["class"], round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)))
    return tuple(out)


def boxes_json(boxes: Iterable[Box]) -> list[dict[str, Any]]:
    """Boxes the way the editor and the audit trail show them."""
    return [{"class": b.class_name, "box": [b.x1, b.y1, b.x2, b.y2]} for b in boxes]
