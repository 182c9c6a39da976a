"""Golden-sample inspection: a frame judged against a reference image of a good part.

One step, shared by training, ``predict``, ``evaluate``, the parity gate and the gateway, so that a model
always sees exactly the input it was trained on:

1. :func:`align` registers the reference onto the frame (an affine found by ECC, started from a phase
   correlation) and says whether the result is trustworthy under :class:`AlignmentLimits`. A frame that is not
   aligned must go to REVIEW with :attr:`Alignment.reason`, never PASS: a difference against a misplaced
   reference means nothing.
2. The warped reference is brightness-matched to the frame, and the border the warp leaves empty is filled
   with the frame's own pixels, so neither lighting nor the border ever shows as a difference.
3. :func:`reference_input` builds the model input (frame, reference, difference) as one 3-channel image,
   versioned by :data:`ENCODING`.
4. :func:`anomaly_regions` finds what differs without any model: the zero-label flags a product has from its
   first golden sample; :func:`unexplained` keeps the ones no detection accounts for.

The reference is warped onto the frame, never the frame onto the reference: boxes, detections and the review
app all live in frame pixels, and the frame is the evidence, so it is never resampled (interpolation would
soften the very defects being looked for).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lineqa.vision.errors import ImageError, VisionError

ENCODING = "frame-reference-diff/1"
"""The model-input encoding :func:`reference_input` produces; models trained on it record this string."""

_COARSEST_SIDE_PX = 80  # the pyramid stops halving before the shorter side gets below this
_ECC_SMOOTHING_PX = 5  # ECC's own Gaussian: gives binarised images (DeepPCB) the gradients ECC needs
_BORDER_ERODE_PX = 2  # pixels next to the warp's border mix in replicated values; they are not trusted
_RETRY_BELOW_CORRELATION = 0.7  # an ECC result from no motion that correlates worse is tried again from afar
_MAX_AFFINE_CORRECTION = 0.02  # of the image diagonal, at the corners: about a 4 % scale difference
_BLANK_STD = 2.0  # grey levels: a reference this flat has nothing to align by, and nothing to misplace
_MIN_TEXTURE_RATIO = 0.02  # a direction with less gradient energy than this share of the strongest has none


@dataclass(frozen=True)
class AlignmentLimits:
    """When an alignment is trusted. Outside them the part goes to REVIEW with the reason.

    ``min_quality`` is the lowest acceptable :attr:`Alignment.quality` (ECC correlation). The motion limits
    describe the fixture: a part that sits further off than this is misplaced or a different product, and the
    comparison is not trusted even if the images happen to correlate. The shift limit applies to the shift
    the reference's texture can show: along stripes or across a blank area a shift is neither measurable nor
    harmful, and refusing it would send every striped part to REVIEW.
    """

    min_quality: float = 0.8
    max_shift_px: float = 24.0
    max_rotation_deg: float = 3.0
    max_scale_change: float = 0.05  # |scale - 1|: camera distance, or a reference taken at another zoom

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_quality <= 1.0:
            raise ValueError(f"expected min_quality in [0, 1], got {self.min_quality}")
        for name in ("max_shift_px", "max_rotation_deg", "max_scale_change"):
            if getattr(self, name) < 0:
                raise ValueError(f"expected {name} >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, eq=False)
class Alignment:
    """A frame and its reference, registered and brightness-matched, in the frame's pixel grid.

    ``frame`` is the frame in grey (converted, never resampled). ``reference`` is the reference warped onto it
    and matched in brightness, holding the frame's own pixels where ``valid`` is False (outside the warped
    reference), so the pair differs only where the part does. ``transform`` (2x3, float64) takes reference
    pixel coordinates to frame pixel coordinates: where the part moved. ``shift_px`` is how far the image
    centre moved, ``rotation_deg`` and ``scale`` the rest of that motion. ``quality`` is in [0, 1] (the ECC
    correlation; 1 for a blank reference, which cannot be misplaced: whatever the frame shows on it is an
    anomaly). ``aligned`` is False when a limit was broken or no alignment was found; ``reason`` then says
    which in words a QA operator can act on, and is empty otherwise. All arrays are read-only.
    """

    frame: np.ndarray
    reference: np.ndarray
    valid: np.ndarray
    transform: np.ndarray
    quality: float
    shift_px: tuple[float, float]
    rotation_deg: float
    scale: float
    aligned: bool
    reason: str

    def __post_init__(self) -> None:
        for name in ("frame", "reference", "valid", "transform"):
            getattr(self, name).setflags(write=False)


@dataclass(frozen=True)
class AnomalySettings:
    """What counts as a difference worth a human's look, in the recipe's terms.

    The difference map is smoothed by ``blur_sigma_px``; pixels at least ``pixel_threshold`` grey levels
    apart form candidate regions; an opening by ``opening_px`` removes thin slivers along edges (what a
    residual sub-pixel misalignment or a lens blur leaves, never a defect); a region is kept when it covers at
    least ``min_area_px`` pixels and its mean difference is at least ``min_contrast`` grey levels.
    The defaults were tuned on every tenth DeepPCB board (see benchmarks/bench_anomaly.py): a 5 px opening is
    what removes the edge slivers between DeepPCB's boards and their templates while keeping its smallest
    defects; recipes for other products set their own.
    """

    blur_sigma_px: float = 1.0
    pixel_threshold: int = 60
    opening_px: int = 5
    min_area_px: int = 12
    min_contrast: float = 90.0

    def __post_init__(self) -> None:
        if self.blur_sigma_px < 0 or self.opening_px < 0 or self.min_area_px < 1:
            raise ValueError(f"expected blur_sigma_px >= 0, opening_px >= 0 and min_area_px >= 1, got {self}")
        if not 1 <= self.pixel_threshold <= 255 or not 0 <= self.min_contrast <= 255:
            raise ValueError(f"expected pixel_threshold in [1, 255] and min_contrast in [0, 255], got {self}")


@dataclass(frozen=True)
class AnomalyRegion:
    """One connected region where frame and reference differ, in frame pixels.

    The box is ``[x1, x2) x [y1, y2)`` (so ``x2 - x1`` is its width); ``area_px`` counts the region's own
    pixels, ``contrast`` is their mean absolute difference in grey levels.
    """

    x1: int
    y1: int
    x2: int
    y2: int
    area_px: int
    contrast: float

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)


def _grey(image: np.ndarray, what: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ImageError(f"expected a uint8 {what}, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    raise ImageError(f"expected a {what} of shape (H, W) or (H, W, 3), got {image.shape}")


def _fit_to(reference: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The reference stretched to the frame's size: a golden sample shows the same field of view as the
    frames it is compared with, possibly at another resolution; any residual scale is left to the alignment."""
    height, width = shape[:2]
    if reference.shape[:2] == (height, width):
        return reference
    shrinking = reference.shape[0] * reference.shape[1] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(reference, (width, height), interpolation=interpolation))


def _pyramid(image: np.ndarray) -> list[np.ndarray]:
    """Finest first, halving until the next level would be under the coarsest side."""
    levels: list[np.ndarray] = [image.astype(np.float32)]
    while min(levels[-1].shape) // 2 >= _COARSEST_SIDE_PX:
        levels.append(np.asarray(cv2.pyrDown(levels[-1])))
    return levels


def _ecc(
    frame: np.ndarray, reference: np.ndarray, warp: np.ndarray, motion: int, iterations: int
) -> tuple[np.ndarray, float]:
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, 1e-5)
    everywhere = np.ones(frame.shape, np.uint8)
    correlation, found = cv2.findTransformECC(frame, reference, warp, motion, criteria, everywhere, _ECC_SMOOTHING_PX)
    return np.asarray(found, dtype=np.float32), float(correlation)


def _corner_gap_px(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...]) -> float:
    height, width = shape[:2]
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], np.float64).T
    return float(np.abs(a.astype(np.float64) @ corners - b.astype(np.float64) @ corners).max())


def _refine(frames: list[np.ndarray], references: list[np.ndarray], warp: np.ndarray) -> tuple[np.ndarray, float]:
    """ECC from the coarsest level to the finest, starting at ``warp`` (given at the coarsest level).

    The motion model grows with the resolution: a translation where the image is a thumbnail, a rigid motion
    up to full resolution, and last an affine, kept only as a small correction of the rigid fit (a camera a
    little closer, a lens a little different). On a nearly blank image ECC would otherwise "improve" its
    correlation by scaling the few features out of view; fewer free parameters at coarse levels likewise keep
    it from wandering along patterns that repeat.
    """
    coarsest = len(frames) - 1
    for level in range(coarsest, -1, -1):
        motion = cv2.MOTION_TRANSLATION if level == coarsest and level else cv2.MOTION_EUCLIDEAN
        warp, correlation = _ecc(frames[level], references[level], warp, motion, 50)
        if level:
            warp[:, 2] *= 2.0
    with contextlib.suppress(cv2.error):
        affine, affine_correlation = _ecc(frames[0], references[0], warp.copy(), cv2.MOTION_AFFINE, 30)
        diagonal = math.hypot(*frames[0].shape)
        if _corner_gap_px(affine, warp, frames[0].shape) <= _MAX_AFFINE_CORRECTION * diagonal:
            warp, correlation = affine, affine_correlation
    return warp.astype(np.float64), correlation


def _estimate(frame: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """The 2x3 warp taking frame coordinates to reference coordinates, and its ECC correlation.

    A part in a fixture sits close to where the reference was taken, so ECC starts from no motion: that also
    keeps it from jumping to a false match on a repetitive pattern. Only when that fails (a part far off, past
    ECC's reach of a few coarse pixels) does a phase correlation supply the starting translation. Raises
    ``cv2.error`` when neither start converges (uncorrelated images).
    """
    frames, references = _pyramid(frame), _pyramid(reference)
    best: tuple[np.ndarray, float] | None = None
    with contextlib.suppress(cv2.error):
        best = _refine(frames, references, np.eye(2, 3, dtype=np.float32))
    if best is None or best[1] < _RETRY_BELOW_CORRELATION:
        (dx, dy), _ = cv2.phaseCorrelate(frames[-1], references[-1])
        start = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
        try:
            retry = _refine(frames, references, start)
        except cv2.error:
            if best is None:
                raise
        else:
            best = retry if best is None or retry[1] > best[1] else best
    return best


def _textured_directions(image: np.ndarray) -> np.ndarray:
    """Unit vectors (k, 2) of the directions in which ``image`` has texture (0 to 2 of them).

    A shift along a direction without texture (along stripes, across a blank area) changes nothing in the
    image, so no alignment can measure it, and it makes no difference to the comparison either.
    """
    smooth = cv2.GaussianBlur(image, (0, 0), 1.5).astype(np.float32)
    gx, gy = cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    tensor = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]], dtype=np.float64)
    strengths, directions = np.linalg.eigh(tensor)
    keep = strengths > _MIN_TEXTURE_RATIO * max(float(strengths[-1]), 1e-9)
    return np.asarray(directions[:, keep].T)


def _motion(transform: np.ndarray, width: int, height: int) -> tuple[tuple[float, float], float, float]:
    """(shift of the image centre, rotation in degrees, scale) of a reference-to-frame affine.

    Rotation follows OpenCV's ``getRotationMatrix2D``: positive is counter-clockwise as the image is shown.
    """
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    moved = transform[:, :2] @ centre + transform[:, 2]
    linear = transform[:, :2]
    rotation = math.degrees(math.atan2(linear[0, 1] - linear[1, 0], linear[0, 0] + linear[1, 1]))
    scale = math.sqrt(abs(float(np.linalg.det(linear))))
    return (float(moved[0] - centre[0]), float(moved[1] - centre[1])), rotation, scale


def _broken_limit(quality: float, shift: float, rotation: float, scale: float, limits: AlignmentLimits) -> str:
    if quality < limits.min_quality:
        return f"alignment quality {quality:.2f} is below the minimum {limits.min_quality:.2f}"
    if shift > limits.max_shift_px:
        return f"part shifted {shift:.1f} px from the reference, more than {limits.max_shift_px:g} px"
    if abs(rotation) > limits.max_rotation_deg:
        return f"part rotated {rotation:.2f} degrees from the reference, more than {limits.max_rotation_deg:g}"
    if abs(scale - 1.0) > limits.max_scale_change:
        return f"part scaled {scale:.3f}x against the reference, beyond 1 +- {limits.max_scale_change:g}"
    return ""


def match_brightness(reference: np.ndarray, frame: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``reference`` with the mean and spread of ``frame`` over the ``valid`` pixels (uint8, same shape).

    A gain and an offset absorb a lamp that dims or a camera that exposes differently, and leave every local
    difference (a defect) as it was. A flat reference (no spread) is only shifted.
    """
    ref = reference.astype(np.float32)
    ref_mean, ref_std = cv2.meanStdDev(ref, mask=valid.astype(np.uint8))
    frame_mean, frame_std = cv2.meanStdDev(frame, mask=valid.astype(np.uint8))
    gain = float(frame_std[0, 0] / ref_std[0, 0]) if ref_std[0, 0] > 1e-3 else 1.0
    matched = (ref - float(ref_mean[0, 0])) * gain + float(frame_mean[0, 0])
    return np.asarray(np.clip(np.rint(matched), 0, 255).astype(np.uint8))


def align(frame: np.ndarray, reference: np.ndarray, limits: AlignmentLimits = AlignmentLimits()) -> Alignment:
    """Register ``reference`` onto ``frame`` and brightness-match it (see :class:`Alignment`).

    Both are uint8, grey or BGR, of any sizes: the reference is first stretched to the frame's size. Never
    raises for images that merely do not match: the result is then not ``aligned``, with the reason, and its
    reference is the stretched one, unmoved, so the caller can still show the pair.
    """
    frame_grey = _grey(frame, "frame")
    reference_grey = _fit_to(_grey(reference, "reference"), frame_grey.shape)
    height, width = frame_grey.shape
    reason = ""
    if float(reference_grey.std()) < _BLANK_STD:  # a blank golden sample: nothing to misplace, nothing to fit
        warp, quality = np.eye(2, 3), 1.0
    else:
        try:
            warp, quality = _estimate(frame_grey, reference_grey)
        except cv2.error:
            warp, quality, reason = np.eye(2, 3), 0.0, "no alignment found: frame and reference do not correlate"
    quality = min(max(quality, 0.0), 1.0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(reference_grey, warp, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(
        np.ones_like(frame_grey), warp, (width, height), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    kernel = np.ones((2 * _BORDER_ERODE_PX + 1,) * 2, np.uint8)
    valid = np.asarray(cv2.erode(inside, kernel)).astype(bool)  # the image's own edges are no border
    if not valid.any():
        valid, reason = np.ones_like(valid), reason or "no overlap between frame and reference after alignment"
    matched = match_brightness(warped, frame_grey, valid)
    matched[~valid] = frame_grey[~valid]
    transform = np.asarray(cv2.invertAffineTransform(warp), dtype=np.float64)
    shift, rotation, scale = _motion(transform, width, height)
    visible_shift = float(np.linalg.norm(_textured_directions(reference_grey) @ np.asarray(shift)))
    reason = reason or _broken_limit(quality, visible_shift, rotation, scale, limits)
    return Alignment(frame_grey.copy(), matched, valid, transform, quality, shift, rotation, scale, not reason, reason)


def reference_input(aligned: Alignment) -> np.ndarray:
    """The model input of :data:`ENCODING`: uint8 (H, W, 3) holding, in array order, the frame, the aligned
    reference and their absolute difference (all grey).

    Three 8-bit channels make the pair look like an ordinary colour image to every detector, exporter and
    augmentation, so nothing downstream changes. "Array order" matters: OpenCV writes index 0 as a file's blue
    plane, and Ultralytics flips BGR to RGB before the network; both are consistent as long as every path
    builds the input here. Outside :attr:`Alignment.valid` the difference is zero by construction.
    """
    difference = cv2.absdiff(aligned.frame, aligned.reference)
    return np.ascontiguousarray(np.dstack([aligned.frame, aligned.reference, difference]))


def check_encoding(encoding: str, model: str) -> None:
    """Refuse a model trained on a reference encoding this version does not build: fed another encoding, it
    would still return detections, just meaningless ones."""
    if encoding != ENCODING:
        raise VisionError(f"model {model!r} takes {encoding!r} input; this lineqa builds only {ENCODING!r}")


def model_input(frame: np.ndarray, reference: np.ndarray, limits: AlignmentLimits = AlignmentLimits()) -> np.ndarray:
    """The model input of a labelled pair, as training and dataset exports build it: aligned and encoded
    exactly as at inspection time. A pair outside ``limits`` keeps its best alignment rather than being
    dropped: its labels were drawn by a person on the frame, so it remains a fair training image (at
    inspection time the same frame goes to REVIEW instead)."""
    return reference_input(align(frame, reference, limits))


def difference_map(aligned: Alignment, blur_sigma_px: float) -> np.ndarray:
    """Absolute difference of the smoothed pair (uint8), zero outside the valid area.

    Smoothing both images alike turns sensor noise and the different softness of two lenses into small
    values, while a defect, many pixels across, keeps its contrast.
    """
    frame, reference = aligned.frame, aligned.reference
    if blur_sigma_px > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur_sigma_px)
        reference = cv2.GaussianBlur(reference, (0, 0), blur_sigma_px)
    difference = np.asarray(cv2.absdiff(frame, reference))
    difference[~aligned.valid] = 0
    return np.asarray(difference)


def anomaly_regions(aligned: Alignment, settings: AnomalySettings = AnomalySettings()) -> list[AnomalyRegion]:
    """Regions where the frame differs from its reference (see :class:`AnomalySettings`), largest first.

    Nothing here knows what a defect looks like: anything the golden sample does not show is a candidate, which
    is what lets a product with no labelled defects get REVIEW flags from day one.
    """
    difference = difference_map(aligned, settings.blur_sigma_px)
    candidates = (difference >= settings.pixel_threshold).astype(np.uint8)
    if settings.opening_px > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (settings.opening_px, settings.opening_px))
        candidates = np.asarray(cv2.morphologyEx(candidates, cv2.MORPH_OPEN, kernel))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < settings.min_area_px:
            continue
        contrast = float(difference[y : y + h, x : x + w][labels[y : y + h, x : x + w] == label].mean())
        if contrast >= settings.min_contrast:
            regions.append(AnomalyRegion(x, y, x + w, y + h, area, contrast))
    return sorted(regions, key=lambda region: -region.area_px)


def unexplained(
    regions: Sequence[AnomalyRegion], boxes: np.ndarray | Sequence[Sequence[float]], min_overlap: float = 0.5
) -> list[AnomalyRegion]:
    """The regions that no box explains: a box explains a region when it covers at least ``min_overlap`` of
    the region's box.

    Coverage of the region, not IoU: a detection box is usually larger than the difference it accounts for
    (a spur's box includes the track it sticks out of), and that must still count as explained.
    """
    xyxy = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not regions or not len(xyxy):
        return list(regions)
    region_boxes = np.array([region.xyxy for region in regions], dtype=np.float64)
    top_left = np.maximum(region_boxes[:, None, :2], xyxy[None, :, :2])
    bottom_right = np.minimum(region_boxes[:, None, 2:], xyxy[None, :, 2:])
    covered = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    areas = np.prod(region_boxes[:, 2:] - region_boxes[:, :2], axis=1)
    coverage = covered.max(axis=1) / np.maximum(areas, 1.0)
    return [region for region, share in zip(regions, coverage, strict=True) if share < min_overlap]
