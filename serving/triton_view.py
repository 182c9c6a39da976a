"""The embedded Triton's view of the model repository: generated from it, never edited, rebuilt on every change.

The repository keeps Triton's production layout for NVIDIA's Triton (onnxruntime or TensorRT backend). The
``tritonserver`` that the ``nvidia-pytriton`` wheel ships has no ONNX Runtime backend, only Triton's Python
backend, so the embedded server reads this derived folder instead::

    <view>/<model>/config.pbtxt          backend "python", the versions to load, uint8 input
    <view>/<model>/<version>/model.py    lineqa.serving.triton_python_model, copied
    <view>/<model>/<version>/model.onnx  a link to the repository's file

Its ``version_policy`` names exactly the versions the gateway may judge with (the one on the line, and any a
recipe pins), so promoting or rolling back is a load of the model through Triton's model-control API: Triton
loads the new version beside the old one and unloads what the policy no longer names.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lineqa.serving import triton_python_model
from lineqa.serving.model_repository import CONFIG_NAME, ModelRepository, ModelSettings, ModelVersion

MODEL_SCRIPT = Path(triton_python_model.__file__)


@dataclass(frozen=True)
class InstancePlan:
    """How many backend stubs (each one ONNX Runtime session) serve a model version, with how many threads."""

    instances: int
    ort_threads: int

    @classmethod
    def for_machine(cls, configured_instances: int, ort_threads: int = 0, *, gpu: bool = False) -> InstancePlan:
        """By default one single-threaded session per usable core: on a CPU, parallel sessions beat one
        session's threads working on one frame (``lineqa bench`` on 2 cores, YOLO11n at 640: 18.6 frames/s
        against 15.6 with one two-thread session). Given ``ort_threads``, or for a model on the GPU, the
        model's configured instance count (with that many threads each, one by default on the GPU)."""
        if ort_threads or gpu:
            return cls(configured_instances, ort_threads or 1)
        return cls(max(configured_instances, len(os.sched_getaffinity(0))), 1)


def render_view_config(
    name: str, version: ModelVersion, settings: ModelSettings, versions: Iterable[int], plan: InstancePlan
) -> str:
    """``config.pbtxt`` of one model for Triton's Python backend, loading ``versions``."""
    meta = version.metadata
    height, width = meta.input_hw
    batch_dim = [] if settings.batching else [meta.fixed_batch or 1]
    input_dims = ", ".join(map(str, [*batch_dim, 3, height, width]))
    output_dims = ", ".join(map(str, [*batch_dim, *meta.output_dims]))
    parameters = {
        "onnx_input": meta.input_name,
        "onnx_output": meta.output_name,
        "ort_threads": str(plan.ort_threads),
        # ONNX Runtime's execution providers, in order; a model configured for the GPU needs onnxruntime-gpu.
        "ort_providers": "CUDAExecutionProvider,CPUExecutionProvider" if settings.gpu else "CPUExecutionProvider",
    }
    lines = [
        f'name: "{name}"',
        'backend: "python"',
        f"max_batch_size: {settings.max_batch_size}",
        f'input [ {{ name: "{meta.input_name}" data_type: TYPE_UINT8 dims: [ {input_dims} ] }} ]',
        f'output [ {{ name: "{meta.output_name}" data_type: TYPE_FP32 dims: [ {output_dims} ] }} ]',
    ]
    if settings.batching and settings.gpu:
        # On a CPU, merging frames into one batch only makes one instance work longer while another idles:
        # each call (one frame, or one frame's tiles) runs as it came. A GPU runs a batch about as fast as a frame.
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {settings.max_queue_delay_us} }}")
    lines += [
        f"version_policy: {{ specific {{ versions: [ {', '.join(map(str, sorted(versions)))} ] }} }}",
        f"instance_group [ {{ count: {plan.instances} kind: KIND_CPU }} ]",
    ]
    lines += [f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


def build_view(
    repository: ModelRepository,
    wanted: Mapping[str, Iterable[int]],
    root: Path,
    *,
    ort_threads: int = 0,
) -> None:
    """Make the view under ``root`` show ``wanted`` (model name → versions to load), and nothing else.

    A version folder that stays is left untouched, so that Triton, which reloads a version whose folder
    changed, leaves the versions being served alone; new ones are written beside and renamed into place, and
    ``config.pbtxt`` is replaced whole, so a load that Triton starts reads one consistent configuration."""
    root.mkdir(parents=True, exist_ok=True)
    for name, versions in wanted.items():
        numbers = sorted(set(versions))
        chosen = [repository.version(name, number) for number in numbers]
        settings = repository.settings(name)
        plan = InstancePlan.for_machine(settings.instance_count, ort_threads, gpu=settings.gpu)
        folder = root / name
        folder.mkdir(exist_ok=True)
        for version in chosen:
            if not (folder / str(version.version)).is_dir():
                _write_version(folder, version)
        for stale in folder.iterdir():
            if stale.is_dir() and stale.name.isdigit() and int(stale.name) not in numbers:
                shutil.rmtree(stale)
        staging = folder / f".{CONFIG_NAME}.new"
        staging.write_text(render_view_config(name, chosen[-1], settings, numbers, plan))
        os.replace(staging, folder / CONFIG_NAME)
    for stale in root.iterdir():
        if not stale.name.startswith(".") and stale.name not in wanted:
            shutil.rmtree(stale, ignore_errors=True)


def _write_version(folder: Path, version: ModelVersion) -> None:
    staging = folder / f".{version.version}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copyfile(MODEL_SCRIPT, staging / "model.py")
    (staging / "model.onnx").symlink_to(version.model_file.resolve())
    os.rename(staging, folder / str(version.version))
