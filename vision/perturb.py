"""Synthetic re-photographs: the same part, seen again by a camera that is never quite where it was.

A golden-sample comparison is only worth something if it ignores what changes between two shots of a *good*
part: the part sits a few pixels off in its fixture, turns by a fraction of a degree, the lamp ages, the lens
is a little soft, the sensor is noisy. DeepPCB's templates are pixel-perfect copies of the reference, so a false
alarm rate measured on them would flatter any method. :func:`rephotograph` makes each such change small and
random but reproducible from a seeded generator, for the benchmarks and the tests alike; :func:`photograph`
applies one known :class:`Shot`, so a test can check that alignment undoes exactly what was done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lineqa.vision.errors import ImageError

MAX_SHIFT_PX = 4.0
MAX_ROTATION_DEG = 0.5
MAX_GAIN_CHANGE = 0.10  # brightness and contrast, each +-10 %
BLUR_SIGMA_PX = (0.3, 0.9)  # mild: a slightly soft lens, never a smeared defect
NOISE_SIGMA = (1.0, 4.0)  # grey levels, a typical 8-bit industrial sensor in good light


@dataclass(frozen=True)
class Shot:
    """How one photograph differs from the reference it is compared with.

    The geometry moves the reference's content: a point ``p`` of the reference appears at
    ``rotation(p - centre) + centre + (dx_px, dy_px)`` in the photograph (see :func:`shot_transform`).
    ``brightness`` and ``contrast`` are gains (1.0 = unchanged): brightness scales every grey level (exposure),
    contrast scales the distance from the image's mean. ``noise_sigma`` is in grey levels.
    """

    dx_px: float = 0.0
    dy_px: float = 0.0
    rotation_deg: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    blur_sigma_px: float = 0.0
    noise_sigma: float = 0.0


def random_shot(rng: np.random.Generator) -> Shot:
    """A shot within the limits above; the shift is uniform over a disc, so no direction is favoured."""
    radius = MAX_SHIFT_PX * math.sqrt(rng.uniform(0.0, 1.0))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    return Shot(
        dx_px=radius * math.cos(angle),
        dy_px=radius * math.sin(angle),
        rotation_deg=rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG),
        brightness=1.0 + rng.uniform(-MAX_GAIN_CHANGE, MAX_GAIN_CHANGE),
        contrast=1.0 + rng.uniform(-MAX_GAIN_CHANGE, MAX_GAIN_CHANGE),
        blur_sigma_px=rng.uniform(*BLUR_SIGMA_PX),
        noise_sigma=rng.uniform(*NOISE_SIGMA),
    )


def shot_transform(shot: Shot, width: int, height: int) -> np.ndarray:
    """The 2x3 affine matrix that takes reference pixel coordinates to the photograph's (float64)."""
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = np.asarray(cv2.getRotationMatrix2D(centre, shot.rotation_deg, 1.0), dtype=np.float64)
    matrix[:, 2] += (shot.dx_px, shot.dy_px)
    return matrix


def photograph(image: np.ndarray, shot: Shot, rng: np.random.Generator | None = None) -> np.ndarray:
    """``image`` as ``shot`` sees it: same size, dtype and channels.

    Order follows the light path: the part moves, the lens blurs, exposure and contrast scale, the sensor adds
    noise, and the result is quantised to 8 bits. The border the move uncovers is mirrored from the image (a
    camera always sees *something* there, never black). ``rng`` draws the noise; it is needed only when
    ``shot.noise_sigma`` is positive.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ImageError(f"expected a uint8 grey or colour image, got {image.dtype} of shape {image.shape}")
    height, width = image.shape[:2]
    moved = cv2.warpAffine(
        image,
        shot_transform(shot, width, height),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    out = moved.astype(np.float32)
    if shot.blur_sigma_px > 0:
        out = np.asarray(cv2.GaussianBlur(out, (0, 0), shot.blur_sigma_px), dtype=np.float32)
    out *= shot.brightness
    mean = float(out.mean())
    out = (out - mean) * shot.contrast + mean
    if shot.noise_sigma > 0:
        if rng is None:
            raise ValueError("a shot with noise needs a random generator")
        out += rng.normal(0.0, shot.noise_sigma, out.shape).astype(np.float32)
    return np.asarray(np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(image.shape))


def rephotograph(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` photographed again with a random :class:`Shot` (see :func:`random_shot`); seeded by ``rng``."""
    return photograph(image, random_shot(rng), rng)
