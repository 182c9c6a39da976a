"""Letterbox preprocessing, identical to Ultralytics' ``LetterBox`` and ``scale_boxes``.

A model's verdicts must not change between training (Ultralytics) and serving (this code), so every step
copies Ultralytics' arithmetic exactly: the scale ``min(h_in / h, w_in / w)``, Python's ``round`` (half to
even) for the resized size, padding split as ``round(d - 0.1)`` / ``round(d + 0.1)``, bilinear resizing, grey
114 padding, BGR to RGB, and scaling to [0, 1] in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Where a source image sits inside the model input: what it takes to map boxes back."""

    source_hw: tuple[int, int]
    input_hw: tuple[int, int]
    resized_wh: tuple[int, int]
    left: int
    top: int
    right: int
    bottom: int

    @property
    def gain_xy(self) -> tuple[float, float]:
        """Resized over source size per axis (the two differ slightly after rounding, as in Ultralytics)."""
        return self.resized_wh[0] / self.source_hw[1], self.resized_wh[1] / self.source_hw[0]

    def to_source(self, xyxy: np.ndarray) -> np.ndarray:
        """Map (N, 4) boxes from model-input pixels back to source pixels, clipped to the source image."""
        gain_x, gain_y = self.gain_xy
        out = np.asarray(xyxy, dtype=np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.left) / gain_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.top) / gain_y
        height, width = self.source_hw
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def plan_letterbox(
    source_hw: tuple[int, int],
    input_hw: tuple[int, int],
    *,
    auto: bool = False,
    stride: int = 32,
    scaleup: bool = True,
) -> Letterbox:
    """Compute the letterbox of a source size into a model input size.

    ``auto`` pads only to the next multiple of ``stride`` (Ultralytics' "rect" inference, used for PyTorch
    weights and dynamic-shape exports); a fixed-shape ONNX or TensorRT model needs ``auto=False``.
    """
    height, width = source_hw
    if height <= 0 or width <= 0:
        raise ValueError(f"source size must be positive, got {source_hw}")
    ratio = min(input_hw[0] / height, input_hw[1] / width)
    if not scaleup:
        ratio = min(ratio, 1.0)
    resized_w, resized_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    pad_w, pad_h = input_hw[1] - resized_w, input_hw[0] - resized_h
    if auto:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    half_w, half_h = pad_w / 2, pad_h / 2
    return Letterbox(
        source_hw=(height, width),
        input_hw=(resized_h + pad_h, resized_w + pad_w),
        resized_wh=(resized_w, resized_h),
        left=round(half_w - 0.1),
        top=round(half_h - 0.1),
        right=round(half_w + 0.1),
        bottom=round(half_h + 0.1),
    )


def letterbox(
    image: np.ndarray, input_hw: tuple[int, int], *, auto: bool = False, stride: int = 32
) -> tuple[np.ndarray, Letterbox]:
    """Resize and pad a BGR ``uint8`` image into ``input_hw``; return it with its :class:`Letterbox`."""
    box = plan_letterbox((image.shape[0], image.shape[1]), input_hw, auto=auto, stride=stride)
    if (image.shape[1], image.shape[0]) != box.resized_wh:
        image = cv2.resize(image, box.resized_wh, interpolation=cv2.INTER_LINEAR)
    if not (box.top or box.bottom or box.left or box.right):
        return image, box
    padded = cv2.copyMakeBorder(
        image, box.top, box.bottom, box.left, box.right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, box


def to_input_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack letterboxed BGR ``uint8`` images into one NCHW ``uint8`` RGB batch.

    This is what crosses to the model server: a quarter of the bytes of the float32 tensor. The model's side
    (ONNX Runtime in-process, or the served model in Triton) scales it with :func:`scale_input`."""
    batch = np.stack(images) if len(images) > 1 else images[0][None]
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)[:, ::-1])


def scale_input(batch: np.ndarray) -> np.ndarray:
    """An NCHW ``uint8`` batch as the float32 tensor in [0, 1] that YOLO models take, as Ultralytics scales it.

    Converting the contiguous uint8 array (rather than a strided view) is 3-4x faster and bit-identical."""
    tensor = batch.astype(np.float32)
    tensor /= 255.0
    return tensor


def to_input_tensor(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack letterboxed BGR ``uint8`` images into one NCHW float32 RGB tensor scaled to [0, 1]."""
    return scale_input(to_input_batch(images))
