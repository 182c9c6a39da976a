"""The model Triton's Python backend runs for the embedded server: ONNX Runtime on one version's ``model.onnx``.

Copied unchanged as ``model.py`` into every version folder of the embedded server's view
(:mod:`lineqa.serving.triton_view`); never edited there. Each model instance is one backend stub process of
Triton's own, with one ONNX Runtime session, running in the gateway's Python environment (the server finds it
first on its PATH: :meth:`lineqa.serving.embedded_triton.TritonDistribution.environment`).

Frames arrive as the gateway letterboxed them: ``uint8`` NCHW RGB, a quarter of the bytes of the float32
tensor; they are scaled to [0, 1] here exactly as :func:`lineqa.vision.letterbox.scale_input` scales them for
ONNX Runtime in-process, so the two paths give bit-identical model inputs. Several requests handed over at
once by Triton's dynamic batcher run as one batch. This file imports nothing of lineqa: the stub need not
import the gateway's packages.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

try:  # only inside Triton's Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - imported by the gateway only to find this file
    pb_utils = None


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


class TritonPythonModel:
    """Triton's Python-backend model interface: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = _parameters(config)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("ort_threads", "1"))
        options.inter_op_num_threads = 1
        # Threads that spin while waiting burn the cores the gateway and the other instances need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = parameters.get("ort_providers", "CPUExecutionProvider").split(",")
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:  # never fall back silently: a model configured for the GPU must run on it
            raise RuntimeError(f"this ONNX Runtime lacks {missing} (for the GPU: pip install onnxruntime-gpu)")
        model_file = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(model_file, options, providers=providers)
        self.input_name = parameters["onnx_input"]
        self.output_name = parameters["onnx_output"]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def _run(self, batch: np.ndarray) -> np.ndarray:
        tensor = batch.astype(np.float32)
        tensor /= 255.0
        output: np.ndarray = self.session.run([self.output_name], {self.input_name: tensor})[0]
        return output

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        try:
            if self.batching and len(inputs) > 1:
                outputs = np.split(self._run(np.concatenate(inputs)), np.cumsum([len(i) for i in inputs])[:-1])
            else:
                outputs = [self._run(batch) for batch in inputs]
        except Exception as exc:  # ONNX Runtime's errors are untyped; every request gets the reason
            error = pb_utils.TritonError(f"ONNX Runtime failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, out)]) for out in outputs]

    def finalize(self) -> None:
        self.session = None
