"""Run an exported YOLO detection model with ONNX Runtime, and read what pre/post-processing needs from it.

Ultralytics writes its export settings into the ONNX metadata (class names, input size, stride, whether the
head is end-to-end); this module turns them into a :class:`~lineqa.vision.detector.ModelSpec`, so a model file is
all a user has to give.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lineqa.serving.errors import ModelLoadError
from lineqa.vision.detector import IMAGE_INPUT, INPUT_METADATA_KEY, ModelSpec
from lineqa.vision.errors import ModelOutputError
from lineqa.vision.letterbox import scale_input
from lineqa.vision.yolo_output import HeadKind, infer_head_kind

logger = logging.getLogger(__name__)

DEFAULT_DYNAMIC_BATCH = 16
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _literal(metadata: dict[str, str], key: str) -> Any:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _class_names(metadata: dict[str, str], path: Path) -> tuple[str, ...]:
    names = _literal(metadata, "names")
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise ModelLoadError(f"{path}: class ids in the 'names' metadata are not 0..{len(names) - 1}")
        return tuple(str(names[i]) for i in range(len(names)))
    if isinstance(names, list | tuple) and names:
        return tuple(str(n) for n in names)
    raise ModelLoadError(f"{path}: no class names in the model metadata (export it with Ultralytics)")


def _input_hw(shape: list[Any], metadata: dict[str, str], path: Path) -> tuple[int, int]:
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    imgsz = _literal(metadata, "imgsz")
    if isinstance(imgsz, int):
        return imgsz, imgsz
    if isinstance(imgsz, list | tuple) and len(imgsz) == 2:
        return int(imgsz[0]), int(imgsz[1])
    raise ModelLoadError(f"{path}: the input size is dynamic and the metadata has no 'imgsz'")


class OnnxModel:
    """An ONNX Runtime session for one YOLO detection model; ``infer`` is a :data:`lineqa.vision.detector.InferFn`."""

    def __init__(self, path: str | Path, *, device: str = "cpu", threads: int = 0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        if device not in PROVIDERS:
            raise ModelLoadError(f"unknown device {device!r}; choose one of {sorted(PROVIDERS)}")
        available = set(ort.get_available_providers())
        providers = [p for p in PROVIDERS[device] if p in available]
        if PROVIDERS[device][0] not in available:
            raise ModelLoadError(
                f"device {device!r} needs ONNX Runtime's {PROVIDERS[device][0]}, not in this install "
                f"(available: {sorted(available)})"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own untyped errors for unreadable models
            raise ModelLoadError(f"{self.path}: ONNX Runtime cannot load it: {exc}") from exc
        self.spec = self._read_spec()
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        logger.info("loaded %s: %s", self.path, self.spec)

    def _read_spec(self) -> ModelSpec:
        metadata = self.session.get_modelmeta().custom_metadata_map
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise ModelLoadError(
                f"{self.path}: expected one (batch, 3, H, W) colour input, got {[i.shape for i in inputs]}"
            )
        task = metadata.get("task", "detect")
        if task != "detect":
            raise ModelLoadError(f"{self.path}: a {task!r} model; only detection models are served")
        names = _class_names(metadata, self.path)
        if str(metadata.get("end2end", "")).lower() == "true":
            head = HeadKind.END_TO_END
        else:
            try:
                head = infer_head_kind(outputs[0].shape, len(names))
            except ModelOutputError as exc:
                raise ModelLoadError(f"{self.path}: {exc}") from exc
        batch = inputs[0].shape[0]
        return ModelSpec(
            name=self.path.stem,
            input_hw=_input_hw(inputs[0].shape, metadata, self.path),
            class_names=names,
            head=head,
            max_batch=batch if isinstance(batch, int) else DEFAULT_DYNAMIC_BATCH,
            stride=int(_literal(metadata, "stride") or 32),
            input_encoding=metadata.get(INPUT_METADATA_KEY, IMAGE_INPUT),
        )

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model was exported with, or None when its batch dimension is dynamic."""
        batch = self.session.get_inputs()[0].shape[0]
        return batch if isinstance(batch, int) else None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run on an NCHW batch: ``uint8`` as :func:`~lineqa.vision.detector.preprocess` makes it (scaled here,
        as the served model scales it in Triton), or an already scaled float32 tensor."""
        tensor = scale_input(batch) if batch.dtype == np.uint8 else batch
        output: np.ndarray = self.session.run([self._output_name], {self._input_name: tensor})[0]
        return output
