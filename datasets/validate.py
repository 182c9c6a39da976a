"""Check a labelled dataset before anyone trains on it, and say what is wrong in terms a labeller can act on.

Each finding is an :class:`Issue` of one kind, with a severity: ``error`` makes the data wrong for training
(an unreadable image, a box that cannot be drawn, the same picture in train and val, which inflates every
metric), ``warning`` is probably a mistake (an image nobody labelled, a box drawn twice), ``info`` is worth
knowing (deliberate background images). The report is deterministic: same input, same text and JSON.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.datasets.probe import NEAR_DUPLICATE_BITS, ImageFacts, near_duplicate_pairs

# Two boxes of one class in one image overlapping this much are the same defect drawn twice (double click,
# merged annotation files); two real neighbouring defects hardly ever overlap by 95%.
DUPLICATE_BOX_IOU = 0.95
# A box narrower or lower than one pixel marks nothing a detector can learn: a slip of the mouse or a unit error.
MIN_BOX_SIDE_PX = 1.0


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class IssueKind(str, Enum):
    """The kinds of finding, in the order a report lists them."""

    UNREADABLE_IMAGE = "unreadable_image"
    SIZE_MISMATCH = "size_mismatch"
    DEGENERATE_BOX = "degenerate_box"
    BOX_OUTSIDE_IMAGE = "box_outside_image"
    UNKNOWN_CLASS = "unknown_class"
    DUPLICATE_BOX = "duplicate_box"
    MISSING_LABELS = "missing_labels"
    BACKGROUND_IMAGE = "background_image"
    EXACT_DUPLICATE = "exact_duplicate"
    NEAR_DUPLICATE = "near_duplicate"
    SPLIT_LEAKAGE = "split_leakage"


_KIND_ORDER = {kind: index for index, kind in enumerate(IssueKind)}
_SEVERITY_ORDER = {severity: index for index, severity in enumerate(Severity)}


@dataclass(frozen=True)
class Issue:
    """One finding. ``images`` are image names (sorted when several); ``box`` is the index of the box in the
    image's ``boxes``; ``amount`` is the measure behind it: pixels beyond the edge, IoU, or hash bits apart."""

    kind: IssueKind
    severity: Severity
    images: tuple[str, ...]
    message: str
    box: int | None = None
    amount: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "images": list(self.images),
            "box": self.box,
            "amount": self.amount,
            "message": self.message,
        }


@dataclass(frozen=True)
class ValidationReport:
    """All issues of a dataset, sorted by kind, then image name, then box."""

    images: int
    issues: tuple[Issue, ...]

    def count(self, kind: IssueKind) -> int:
        return sum(1 for issue in self.issues if issue.kind is kind)

    def of_kind(self, kind: IssueKind) -> list[Issue]:
        return [issue for issue in self.issues if issue.kind is kind]

    @property
    def ok(self) -> bool:
        """No errors (warnings and infos do not stop training)."""
        return not any(issue.severity is Severity.ERROR for issue in self.issues)

    def summary(self) -> dict[str, object]:
        by_kind = {kind.value: self.count(kind) for kind in IssueKind if self.count(kind)}
        by_severity = {s.value: sum(1 for i in self.issues if i.severity is s) for s in Severity}
        return {"images": self.images, "ok": self.ok, "by_severity": by_severity, "by_kind": by_kind}

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary(), "issues": [i.to_dict() for i in self.issues]}, indent=2)


def render_text(report: ValidationReport, max_per_kind: int = 20) -> str:
    """The report for a terminal: a summary line, then each kind's issues (the first ``max_per_kind``)."""
    tally = {s: sum(1 for i in report.issues if i.severity is s) for s in Severity}
    counts = ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in tally.items())
    lines = [f"{report.images} images checked: {'OK' if report.ok else 'NOT OK'} ({counts})"]
    for kind in IssueKind:
        issues = report.of_kind(kind)
        if not issues:
            continue
        lines.append(f"\n{kind.value} ({issues[0].severity.value}): {len(issues)}")
        for issue in issues[:max_per_kind]:
            if len(issue.images) == 1:
                box = f" box {issue.box}" if issue.box is not None else ""
                lines.append(f"  {issue.images[0]}{box}: {issue.message}")
            else:  # the message names the images
                lines.append(f"  {issue.message}")
        if len(issues) > max_per_kind:
            lines.append(f"  ... and {len(issues) - max_per_kind} more")
    return "\n".join(lines) + "\n"


def validate(
    images: Sequence[LabelledImage],
    facts: Mapping[str, ImageFacts],
    classes: Sequence[str],
    *,
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS,
    duplicate_box_iou: float = DUPLICATE_BOX_IOU,
) -> ValidationReport:
    """Check every image and box against the probed files (``facts`` by image name, see
    :func:`lineqa.datasets.probe.probe_images`) and the dataset's ``classes``; leakage uses each image's ``split``."""
    missing = [image.name for image in images if image.name not in facts]
    if missing:
        raise ValueError(f"{len(missing)} of {len(images)} images were not probed (first: {missing[0]!r})")
    known = set(classes)
    issues: list[Issue] = []
    for image in images:
        issues += _image_issues(image, facts[image.name], known, duplicate_box_iou)
    issues += _duplicate_issues(images, facts, near_duplicate_bits)
    issues.sort(key=lambda i: (_KIND_ORDER[i.kind], i.images, -1 if i.box is None else i.box))
    return ValidationReport(len(images), tuple(issues))


def _image_issues(image: LabelledImage, fact: ImageFacts, known: set[str], iou_limit: float) -> list[Issue]:
    name = image.name
    issues: list[Issue] = []
    if fact.error is not None:
        issues.append(Issue(IssueKind.UNREADABLE_IMAGE, Severity.ERROR, (name,), fact.error))
    size = (fact.width, fact.height) if fact.width is not None and fact.height is not None else None
    if size is not None and image.declared_size is not None:
        issues += _size_issue(name, image.declared_size, size)
    issues += _label_issues(image)
    bounds = size or image.declared_size
    for index, box in enumerate(image.boxes):
        if box.class_name not in known:
            message = f"class {box.class_name!r} is not one of the dataset's classes"
            issues.append(Issue(IssueKind.UNKNOWN_CLASS, Severity.ERROR, (name,), message, box=index))
        if _is_degenerate(box):
            issues.append(
                Issue(
                    IssueKind.DEGENERATE_BOX,
                    Severity.ERROR,
                    (name,),
                    f"{box.width:g}x{box.height:g} px box at ({box.x1:g}, {box.y1:g}): "
                    f"sides must be at least {MIN_BOX_SIDE_PX:g} px",
                    box=index,
                )
            )
        elif bounds is not None:
            issues += _outside_issue(name, index, box, bounds)
    issues += _duplicate_boxes(image, iou_limit)
    return issues


def _size_issue(name: str, declared: tuple[int, int], real: tuple[int, int]) -> list[Issue]:
    """Boxes are in the pixels of the size the annotation tool saw; another real size means they are off."""
    if tuple(declared) == real:
        return []
    hint = " (swapped: EXIF rotation?)" if tuple(declared) == real[::-1] else ""
    message = f"annotation says {declared[0]}x{declared[1]}, the image is {real[0]}x{real[1]}{hint}"
    return [Issue(IssueKind.SIZE_MISMATCH, Severity.ERROR, (name,), message)]


def _label_issues(image: LabelledImage) -> list[Issue]:
    name = image.name
    if image.annotation is Annotation.MISSING:
        return [Issue(IssueKind.MISSING_LABELS, Severity.WARNING, (name,), "no annotation: never labelled?")]
    if image.annotation is Annotation.BOXES and not image.boxes:
        return [Issue(IssueKind.MISSING_LABELS, Severity.WARNING, (name,), "annotated with boxes, but lists none")]
    if image.annotation is Annotation.BACKGROUND:
        return [Issue(IssueKind.BACKGROUND_IMAGE, Severity.INFO, (name,), "labelled defect-free (background)")]
    return []


def _is_degenerate(box: Box) -> bool:
    coordinates = (box.x1, box.y1, box.x2, box.y2)
    if not all(math.isfinite(value) for value in coordinates):
        return True
    return box.width < MIN_BOX_SIDE_PX or box.height < MIN_BOX_SIDE_PX


def _outside_issue(name: str, index: int, box: Box, bounds: tuple[int, int]) -> list[Issue]:
    """A box partly outside can be clipped to the image (a warning, probably sloppy drawing or an offset); one
    entirely outside marks nothing in it (an error: wrong image or wrong coordinates)."""
    width, height = bounds
    beyond = {
        "left": -box.x1,
        "top": -box.y1,
        "right": box.x2 - width,
        "bottom": box.y2 - height,
    }
    over = {edge: px for edge, px in beyond.items() if px > 0}
    if not over:
        return []
    inside = box.x1 < width and box.y1 < height and box.x2 > 0 and box.y2 > 0
    edges = ", ".join(f"{px:g} px beyond the {edge} edge" for edge, px in over.items())
    message = f"{edges} of the {width}x{height} image" + ("" if inside else " (entirely outside)")
    severity = Severity.WARNING if inside else Severity.ERROR
    return [Issue(IssueKind.BOX_OUTSIDE_IMAGE, severity, (name,), message, box=index, amount=max(over.values()))]


def _duplicate_boxes(image: LabelledImage, iou_limit: float) -> list[Issue]:
    """Same-class boxes overlapping at least ``iou_limit``: each later box is reported against its first twin."""
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, box in enumerate(image.boxes):
        by_class[box.class_name].append(index)
    issues = []
    for indices in by_class.values():
        if len(indices) < 2:
            continue
        xyxy = np.array([[image.boxes[i].x1, image.boxes[i].y1, image.boxes[i].x2, image.boxes[i].y2] for i in indices])
        iou = _iou_matrix(xyxy)
        for later in range(1, len(indices)):
            earlier = int(np.argmax(iou[later, :later]))
            if iou[later, earlier] >= iou_limit:
                issues.append(
                    Issue(
                        IssueKind.DUPLICATE_BOX,
                        Severity.WARNING,
                        (image.name,),
                        f"same {image.boxes[indices[later]].class_name!r} box as box {indices[earlier]} "
                        f"(IoU {iou[later, earlier]:.2f})",
                        box=indices[later],
                        amount=round(float(iou[later, earlier]), 4),
                    )
                )
    return issues


def _iou_matrix(xyxy: np.ndarray) -> np.ndarray:
    area = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    left = np.maximum(xyxy[:, None, 0], xyxy[None, :, 0])
    top = np.maximum(xyxy[:, None, 1], xyxy[None, :, 1])
    right = np.minimum(xyxy[:, None, 2], xyxy[None, :, 2])
    bottom = np.minimum(xyxy[:, None, 3], xyxy[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = area[:, None] + area[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=float), where=union > 0)


class _Components:
    """Union-find over names, for grouping duplicates that are linked through one another."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        root = self._parent.setdefault(name, name)
        while root != self._parent[root]:
            root = self._parent[root]
        while name != root:
            self._parent[name], name = root, self._parent[name]
        return root

    def union(self, names: Iterable[str]) -> None:
        names = list(names)
        for other in names[1:]:
            a, b = self.find(names[0]), self.find(other)
            if a != b:
                self._parent[max(a, b)] = min(a, b)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = defaultdict(list)
        for name in self._parent:
            members[self.find(name)].append(name)
        return sorted(sorted(group) for group in members.values())


def _duplicate_issues(images: Sequence[LabelledImage], facts: Mapping[str, ImageFacts], bits: int) -> list[Issue]:
    """Exact duplicates by SHA-256, near duplicates by perceptual hash between different files, and leakage: a
    duplicate or near-duplicate link between images of two different splits (images without one do not leak)."""
    split_of = {image.name: image.split for image in images}
    by_sha: dict[str, list[str]] = defaultdict(list)
    for image in sorted(images, key=lambda im: im.name):
        sha = facts[image.name].sha256
        if sha is not None:
            by_sha[sha].append(image.name)
    files = [names for _, names in sorted(by_sha.items())]  # each distinct content: the names it has
    hashed = [names for names in files if facts[names[0]].phash is not None]
    pairs = near_duplicate_pairs([facts[names[0]].phash or 0 for names in hashed], bits)
    near = [(hashed[i], hashed[j], distance) for i, j, distance in pairs]

    def splits(names: list[str]) -> set[str]:
        return {split for name in names if (split := split_of[name]) is not None}

    leaks = _Components()
    for names in files:
        if len(splits(names)) > 1:
            leaks.union(names)
    for a, b, _ in near:
        if splits(a) and splits(b) and len(splits(a) | splits(b)) > 1:
            leaks.union([*a, *b])
    leak_issues = [
        Issue(
            IssueKind.SPLIT_LEAKAGE,
            Severity.ERROR,
            tuple(names),
            f"the same or nearly the same picture is in {' and '.join(sorted(splits(names)))}: "
            + ", ".join(f"{name} ({split_of[name] or 'no split'})" for name in names),
        )
        for names in leaks.groups()
    ]
    return [*_exact_issues(files), *_near_issues(near, bits), *leak_issues]


def _exact_issues(files: list[list[str]]) -> list[Issue]:
    return [
        Issue(
            IssueKind.EXACT_DUPLICATE,
            Severity.WARNING,
            tuple(names),
            f"{len(names)} byte-identical files: {', '.join(names)}",
            amount=0,
        )
        for names in files
        if len(names) > 1
    ]


def _near_issues(near: list[tuple[list[str], list[str], int]], bits: int) -> list[Issue]:
    """One issue per set of files linked by near-duplicate pairs, listing every name of each file."""
    linked = _Components()
    closest: dict[str, int] = {}
    names_of: dict[str, list[str]] = {}
    for a, b, distance in near:
        linked.union([a[0], b[0]])
        for names in (a, b):
            names_of[names[0]] = names
            closest[names[0]] = min(distance, closest.get(names[0], distance))
    issues = []
    for firsts in linked.groups():
        names = sorted(name for first in firsts for name in names_of[first])
        nearest = min(closest[first] for first in firsts)
        apart = f"{nearest} of 64 bits apart" if len(firsts) == 2 else f"within {bits} of 64 bits, closest {nearest}"
        message = f"{len(names)} images look alike (perceptual hashes {apart}): {', '.join(names)}"
        issues.append(Issue(IssueKind.NEAR_DUPLICATE, Severity.WARNING, tuple(names), message, amount=nearest))
    return issues
