"""Synthetic boards for golden-sample tests: tracks and pads drawn with OpenCV, a defect drawn at a known place.

Shared by the vision tests and the gateway and ``predict`` tests, so that every layer is checked on the same
parts; no file from ../shared is needed.
"""

from __future__ import annotations

import cv2
import numpy as np

from lineqa.vision.reference import AnomalyRegion

SIZE = 320
DEFECT = (200, 90, 214, 104)  # x1, y1, x2, y2 of the blob drawn on a board: on bare substrate, off every track


def board(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """A grey board: dark substrate, bright tracks both ways and pads, below 255 so gains do not clip."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 40, np.uint8)
    for _ in range(14):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        length, width = int(rng.integers(40, 160)), int(rng.integers(3, 9))
        end = (min(x + length, size), y) if rng.random() < 0.5 else (x, min(y + length, size))
        cv2.line(image, (x, y), end, 190, width)
    for _ in range(18):
        x, y = (int(v) for v in rng.integers(10, size - 10, 2))
        cv2.circle(image, (x, y), int(rng.integers(4, 10)), 210, -1)
        cv2.circle(image, (x, y), 2, 40, -1)
    image[DEFECT[1] - 8 : DEFECT[3] + 8, DEFECT[0] - 8 : DEFECT[2] + 8] = 40  # keep the defect's site bare
    return image


def with_defect(image: np.ndarray) -> np.ndarray:
    out = image.copy()
    x1, y1, x2, y2 = DEFECT
    cv2.ellipse(out, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 30, 0, 360, 190, -1)
    return out


def overlaps(region: AnomalyRegion | tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """Whether two boxes (a region, or any ``x1, y1, x2, y2``) share any area."""
    rx1, ry1, rx2, ry2 = region.xyxy if isinstance(region, AnomalyRegion) else region
    x1, y1, x2, y2 = box
    return rx1 < x2 and rx2 > x1 and ry1 < y2 and ry2 > y1
