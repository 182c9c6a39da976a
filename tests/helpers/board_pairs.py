"""Synthetic boards laid out as DeepPCB lays out its own, so that the real importer attaches each board's clean
twin as its reference: what reference training, ``evaluate`` and ``predict`` tests run on without ../shared.

Each board is its own group (``group<N>``), so a group-aware split can put boards in any split. A defective
board has one blob at :data:`tests.helpers.boards.DEFECT`, labelled ``open`` (DeepPCB type 1); a good board is
its template again, with an empty annotation (a labelled defect-free part).
"""

from __future__ import annotations

from pathlib import Path

import cv2

from tests.helpers.boards import DEFECT, board, with_defect


def write_board_pairs(root: Path, *, defective: int, good: int, first_seed: int = 0) -> Path:
    """``defective`` then ``good`` boards (seeds from ``first_seed``) under ``root``; returns ``root``."""
    listed = []
    for offset in range(defective + good):
        group = str(10000 + first_seed + offset)
        stem = f"{group}000"
        images, notes = root / f"group{group}" / group, root / f"group{group}" / f"{group}_not"
        images.mkdir(parents=True)
        notes.mkdir(parents=True)
        clean = board(seed=first_seed + offset)
        part = with_defect(clean) if offset < defective else clean
        for suffix, pixels in (("temp", clean), ("test", part)):
            cv2.imwrite(str(images / f"{stem}_{suffix}.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
        label = " ".join(str(v) for v in DEFECT) + " 1\n" if offset < defective else ""
        (notes / f"{stem}.txt").write_text(label)
        listed.append(f"group{group}/{group}/{stem}.jpg group{group}/{group}_not/{stem}.txt\n")
    (root / "trainval.txt").write_text("".join(listed))
    return root
