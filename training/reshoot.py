"""Reference-mode training input whose pair is never pixel-perfect, as no pair on a line is.

At inspection a frame is a new photograph of a part and its golden sample an older one: the vision core aligns
them, but a residual sub-pixel motion, the interpolation of the warp, another exposure, lens softness and sensor
noise always remain, and they all show in the difference channel. Some datasets hold pairs that are copies of
one another wherever the part is good (DeepPCB's templates are): a model trained on them learns a difference
channel that is black except at defects, and on a line it meets one that is not. Ultralytics' augmentations
cannot fix this, because they see the composed input, never the pair.

:func:`reshot_input` photographs each training pair again before it is composed: the reference with a random
shot (a move, light and sensor, :func:`lineqa.vision.perturb.random_shot`), the frame with that shot's light and
sensor but no move, so the labels stay where a person drew them. The vision core then aligns the pair exactly
as at inspection. The shot is seeded by the pair's pixels: the same pair always gives the same input, so a
repeated or resumed run trains on the same images.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from lineqa.vision.perturb import photograph, random_shot
from lineqa.vision.reference import model_input


def reshot_input(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The model input of ``(frame, reference)`` after both were photographed again (see the module)."""
    digest = hashlib.sha256(frame.tobytes())
    digest.update(reference.tobytes())
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
    shot = random_shot(rng)
    still = dataclasses.replace(shot, dx_px=0.0, dy_px=0.0, rotation_deg=0.0)
    return model_input(photograph(frame, still, rng), photograph(reference, shot, rng))
