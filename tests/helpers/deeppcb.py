"""A minimal DeepPCB → Ultralytics YOLO conversion for tests that need a quick training set.

The datasets catalog's importer is the real one; this helper only lays out a handful of images (as
symlinks, nothing copied) so training tests do not depend on the catalog.
"""

from __future__ import annotations

from pathlib import Path

DEEPPCB_CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")
DEEPPCB_SIZE = 640


def deeppcb_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(defective image, annotation) pairs in trainval.txt order."""
    pairs = []
    for line in (root / "trainval.txt").read_text().splitlines():
        if line.strip():
            image, annotation = line.split()
            pairs.append((root / image.replace(".jpg", "_test.jpg"), root / annotation))
    return pairs


def read_boxes(annotation: Path) -> list[tuple[int, int, int, int, int]]:
    """(class id 0-5, x1, y1, x2, y2) per defect; DeepPCB's type ids start at 1."""
    rows = []
    for line in annotation.read_text().splitlines():
        if line.strip():
            x1, y1, x2, y2, kind = (int(v) for v in line.split())
            rows.append((kind - 1, x1, y1, x2, y2))
    return rows


def write_yolo_dataset(root: Path, out: Path, splits: list[tuple[Path, Path, str]]) -> Path:
    """Lay out (image, annotation, split) triples as an Ultralytics dataset; return its data.yaml."""
    for image, annotation, split in splits:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        link = out / "images" / split / image.name
        if not link.exists():
            link.symlink_to(image)
        s = DEEPPCB_SIZE
        lines = [
            f"{c} {(x1 + x2) / 2 / s:.6f} {(y1 + y2) / 2 / s:.6f} {(x2 - x1) / s:.6f} {(y2 - y1) / s:.6f}\n"
            for c, x1, y1, x2, y2 in read_boxes(annotation)
        ]
        (out / "labels" / split / f"{image.stem}.txt").write_text("".join(lines))
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(DEEPPCB_CLASSES))
    data = out / "data.yaml"
    data.write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return data


def write_yolo_subset(root: Path, out: Path, *, train: int, val: int) -> Path:
    """The first ``train`` boards for training and the next ``val`` for validation."""
    pairs = deeppcb_pairs(root)[: train + val]
    return write_yolo_dataset(root, out, [(i, a, "train" if k < train else "val") for k, (i, a) in enumerate(pairs)])


def held_out(index: int) -> bool:
    """The split of the committed test model: every fifth board (in trainval.txt order) is held out."""
    return index % 5 == 0


def write_yolo_every_fifth(root: Path, out: Path) -> Path:
    """All 1,000 boards, every fifth one (see :func:`held_out`) for validation."""
    pairs = deeppcb_pairs(root)
    return write_yolo_dataset(root, out, [(i, a, "val" if held_out(k) else "train") for k, (i, a) in enumerate(pairs)])
