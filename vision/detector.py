"""From images to detections with any inference backend: letterbox, batch, infer, decode, map back.

The backend is a plain callable from an NCHW ``uint8`` RGB batch (letterboxed) to the model's raw output, so the
very same code runs with ONNX Runtime in-process (``lineqa predict``, evaluation, the parity gate) and with
Triton behind the gateway; the backend scales the batch to [0, 1] (:func:`~lineqa.vision.letterbox.scale_input`).
Every path letterboxes the same way: the full fixed-size letterbox of the model's input size, whatever the
model file allows, so one image gets the same detections everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lineqa.vision.detections import Detections
from lineqa.vision.errors import ModelOutputError
from lineqa.vision.letterbox import Letterbox, letterbox, to_input_batch
from lineqa.vision.yolo_output import DecodeOptions, HeadKind, decode_outputs

InferFn = Callable[[np.ndarray], np.ndarray]
"""Runs a model on an (N, 3, H, W) ``uint8`` RGB batch and returns its raw (N, ·, ·) detection output."""


IMAGE_INPUT = "image"
"""The input of an ordinary detector: the frame alone."""
INPUT_METADATA_KEY = "lineqa_input"
"""The ONNX metadata key holding a model's input encoding (absent: :data:`IMAGE_INPUT`)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the pre- and post-processing must know about a detection model.

    ``input_encoding`` says what the model was trained to look at: :data:`IMAGE_INPUT`, the frame itself, or
    :data:`lineqa.vision.reference.ENCODING`, the frame with its golden sample (which then must come with every
    frame). It travels in the exported ONNX file's metadata under :data:`INPUT_METADATA_KEY`.
    """

    name: str
    input_hw: tuple[int, int]
    class_names: tuple[str, ...]
    head: HeadKind
    max_batch: int = 1
    stride: int = 32
    input_encoding: str = IMAGE_INPUT

    @property
    def needs_reference(self) -> bool:
        return self.input_encoding != IMAGE_INPUT

    def __post_init__(self) -> None:
        if not self.class_names:
            raise ValueError(f"model {self.name!r} has no class names")
        if min(self.input_hw) <= 0 or self.max_batch < 1:
            raise ValueError(f"model {self.name!r}: bad input size {self.input_hw} or batch {self.max_batch}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def preprocess(images: Sequence[np.ndarray], spec: ModelSpec) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox BGR images into one ``uint8`` model-input batch; keep each image's geometry to map boxes back.

    Always the full fixed-size letterbox (``auto=False``): Ultralytics pads a dynamic-size export only to the
    next stride multiple ("rect"), which would give a non-square image other detections here than in the
    gateway, whose served models have a fixed input size."""
    boxed = [letterbox(image, spec.input_hw, auto=False, stride=spec.stride) for image in images]
    return to_input_batch([b[0] for b in boxed]), [b[1] for b in boxed]


def postprocess(
    raw: np.ndarray, boxes: Sequence[Letterbox], spec: ModelSpec, options: DecodeOptions
) -> list[Detections]:
    """Decode a raw batch output and map every image's boxes back to its source pixels."""
    decoded = decode_outputs(raw, spec.head, spec.num_classes, options)
    if len(decoded) != len(boxes):
        raise ModelOutputError(f"model returned {len(decoded)} results for a batch of {len(boxes)} images")
    return [Detections(box.to_source(d.xyxy), d.confidence, d.class_id) for d, box in zip(decoded, boxes, strict=True)]


def detect(
    images: Sequence[np.ndarray],
    infer: InferFn,
    spec: ModelSpec,
    options: DecodeOptions = DecodeOptions(),  # noqa: B008
) -> list[Detections]:
    """Detect on each image, in batches no larger than the model accepts."""
    results: list[Detections] = []
    for start in range(0, len(images), spec.max_batch):
        chunk = images[start : start + spec.max_batch]
        tensor, boxes = preprocess(chunk, spec)
        results += postprocess(infer(tensor), boxes, spec, options)
    return results
