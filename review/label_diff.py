"""What a decision changed in a part's boxes, line by line, for the part's history.

Boxes are matched old to new: equal ones (same class, corners within 0.01 px) are unchanged; of the rest,
pairs overlapping by IoU >= :data:`SAME_BOX_IOU` (best pairs first) are the same box reclassed, moved or
resized; what is left was removed or added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SAME_BOX_IOU = 0.3
_TOLERANCE_PX = 0.01


@dataclass(frozen=True)
class Change:
    sign: str  # "+" added, "-" removed, "~" changed, "=" unchanged
    text: str


def _parse(labels: Sequence[dict[str, Any]]) -> list[tuple[str, tuple[float, ...]]]:
    return [(str(b["class"]), tuple(float(v) for v in b["box"])) for b in labels]


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _same_corners(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(u - v) <= _TOLERANCE_PX for u, v in zip(a, b, strict=True))


def _box(box: tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in (round(c, 1) for c in box)) + "]"


def diff(old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[Change]:
    """The changes from ``old`` to ``new`` labels (``{"class", "box"}`` dicts as the audit trail keeps them)."""
    before, after = _parse(old), _parse(new)
    unchanged = 0
    for item in list(before):
        twin = next((n for n in after if n[0] == item[0] and _same_corners(n[1], item[1])), None)
        if twin is not None:
            before.remove(item)
            after.remove(twin)
            unchanged += 1
    pairs = sorted(((_iou(o[1], n[1]), i, j) for i, o in enumerate(before) for j, n in enumerate(after)), reverse=True)
    used_old: set[int] = set()
    used_new: set[int] = set()
    changes: list[Change] = []
    for iou, i, j in pairs:
        if iou < SAME_BOX_IOU or i in used_old or j in used_new:
            continue
        used_old.add(i)
        used_new.add(j)
        (old_class, old_box), (new_class, new_box) = before[i], after[j]
        what = old_class if old_class == new_class else f"{old_class} → {new_class}"
        where = "" if _box(old_box) == _box(new_box) else f" {_box(old_box)} → {_box(new_box)}"
        changes.append(Change("~", what + where))
    changes += [Change("-", f"{c} {_box(b)}") for i, (c, b) in enumerate(before) if i not in used_old]
    changes += [Change("+", f"{c} {_box(b)}") for j, (c, b) in enumerate(after) if j not in used_new]
    if unchanged:
        changes.append(Change("=", f"{unchanged} box{'' if unchanged == 1 else 'es'} unchanged"))
    return changes or [Change("=", "no boxes before or after")]
