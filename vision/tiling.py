"""Sliced inference for images much larger than the model input (the SAHI method).

Resizing a 4000 px board image into a 640 px model input shrinks a 30 px defect to 5 px, below what the model
can see. Tiling cuts the image into overlapping windows at (near) native resolution, runs them through the
model in batches, shifts each window's boxes back to image coordinates, optionally adds one whole-image pass
for defects larger than a tile, and merges duplicates across windows: same-class boxes overlapping by more
than ``merge_threshold`` intersection-over-smaller are merged into their union (SAHI's default), so a defect
cut by a window edge is reported once, whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lineqa.vision.detections import Detections
from lineqa.vision.detector import InferFn, ModelSpec, detect
from lineqa.vision.nms import OverlapMetric, merge_overlapping
from lineqa.vision.yolo_output import DecodeOptions


@dataclass(frozen=True)
class TilingOptions:
    """How to cut an image: square ``tile_px`` windows overlapping by ``overlap_ratio`` of a tile."""

    tile_px: int
    overlap_ratio: float = 0.2
    include_full_image: bool = True
    merge_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.tile_px < 32:
            raise ValueError(f"tile_px must be at least 32, got {self.tile_px}")
        if not 0.0 <= self.overlap_ratio < 1.0:
            raise ValueError(f"overlap_ratio must be within [0, 1), got {self.overlap_ratio}")
        if not 0.0 < self.merge_threshold <= 1.0:
            raise ValueError(f"merge_threshold must be within (0, 1], got {self.merge_threshold}")


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / step) + 1
    # The last window is aligned to the far edge, so every window is a full tile inside the image.
    return sorted({min(i * step, length - tile) for i in range(count)})


def tile_windows(image_hw: tuple[int, int], options: TilingOptions) -> np.ndarray:
    """(K, 4) int windows x0, y0, x1, y1 covering the image, row by row."""
    height, width = image_hw
    step = max(1, int(options.tile_px * (1.0 - options.overlap_ratio)))
    xs = _starts(width, options.tile_px, step)
    ys = _starts(height, options.tile_px, step)
    return np.array(
        [(x, y, min(x + options.tile_px, width), min(y + options.tile_px, height)) for y in ys for x in xs],
        dtype=np.int64,
    )


def merge_tiles(
    per_window: list[Detections], windows: np.ndarray, threshold: float, full: Detections | None = None
) -> Detections:
    """Shift each window's detections into image coordinates and merge duplicates across windows."""
    shifted = [d.shifted(float(w[0]), float(w[1])) for d, w in zip(per_window, windows, strict=True)]
    if full is not None:
        shifted.append(full)
    combined = Detections.concat(shifted)
    if not len(combined):
        return combined
    keep, boxes = merge_overlapping(
        combined.xyxy, combined.confidence, combined.class_id, threshold, metric=OverlapMetric.IOS
    )
    return Detections(boxes, combined.confidence[keep], combined.class_id[keep])


def tile_crops(image: np.ndarray, tiling: TilingOptions) -> tuple[list[np.ndarray], np.ndarray]:
    """The images to run for one tiled image: every window's crop, then the whole image when asked for.

    Returns them with the windows; their detections, in the same order, go to :func:`merge_tile_results`.
    """
    windows = tile_windows((image.shape[0], image.shape[1]), tiling)
    crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    if tiling.include_full_image:
        crops.append(image)
    return crops, windows


def merge_tile_results(found: list[Detections], windows: np.ndarray, tiling: TilingOptions) -> Detections:
    """Merge the detections of :func:`tile_crops`' crops (same order) into one image's detections."""
    full = found[len(windows)] if tiling.include_full_image else None
    return merge_tiles(found[: len(windows)], windows, tiling.merge_threshold, full)


def detect_tiled(
    image: np.ndarray,
    infer: InferFn,
    spec: ModelSpec,
    tiling: TilingOptions,
    options: DecodeOptions = DecodeOptions(),  # noqa: B008
) -> Detections:
    """Detect on overlapping windows of one large image (batched), plus an optional whole-image pass."""
    crops, windows = tile_crops(image, tiling)
    return merge_tile_results(detect(crops, infer, spec, options), windows, tiling)
