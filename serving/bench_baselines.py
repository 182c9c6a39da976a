"""The two baselines ``lineqa bench`` puts the gateway's throughput beside, timed in this process while the
gateway is idle: raw ONNX Runtime (the ceiling) and Ultralytics' own ``predict`` (what a user would run
instead); and the ONNX export of the weights, which needs Ultralytics too.

Ultralytics (and torch) are imported only inside the functions that use them: the serving package must import
without the train extra.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from lineqa.cpu import usable_cores
from lineqa.serving.bench import BenchError, Measurement, Progress
from lineqa.serving.bench_cpu import CpuMeter
from lineqa.serving.model_repository import ModelVersion
from lineqa.serving.onnx_model import OnnxModel
from lineqa.vision.detector import preprocess
from lineqa.vision.image import ImageEncoding, decode_image
from lineqa.vision.letterbox import scale_input


class UltralyticsMissingError(BenchError):
    """Exporting the weights and the Ultralytics baseline need the train extra."""


@dataclasses.dataclass(frozen=True)
class Loop:
    """A baseline, prepared once and timed in every round: ``call(k)`` handles the k-th frame, and ``threads``
    says how many compute threads it ended up with, where it chose them itself."""

    label: str
    call: Callable[[int], object]
    threads: Callable[[], int | None] = lambda: None

    def measure(self, frames: int, warmup: int, round_label: str) -> Measurement:
        for k in range(warmup):
            self.call(k)
        progress = Progress(f"{round_label}{self.label}", frames)
        latencies = []
        meter = CpuMeter()
        cpu_before = meter.read()
        start = time.perf_counter()
        for k in range(frames):
            began = time.perf_counter()
            self.call(warmup + k)
            latencies.append(time.perf_counter() - began)
            progress.step()
        seconds = time.perf_counter() - start
        return Measurement(frames, seconds, latencies, CpuMeter.spent(cpu_before, meter.read()), self.threads())


def onnxruntime_loop(version: ModelVersion, jpegs: list[bytes], device: str = "cpu") -> Loop:
    """Raw ONNX Runtime, batch 1, on the served model file with the gateway's preprocessing done beforehand
    (the letterboxed tensors, scaled to float32): one session with an intra-op thread per usable core, on
    ``device`` (``cpu`` or ``cuda``)."""
    cores = usable_cores()
    model = OnnxModel(version.model_file, device=device, threads=cores)
    spec = version.metadata.spec(version.name, max_batch=1)
    tensors = [scale_input(preprocess([decode_image(data, ImageEncoding.JPEG)], spec)[0]) for data in jpegs]
    return Loop("raw ONNX Runtime", lambda k: model.infer(tensors[k % len(tensors)]), lambda: cores)


def load_ultralytics(config_dir: Path) -> ModuleType:
    """Ultralytics offline, its settings in ``config_dir``; a clear error where the train extra is missing."""
    if importlib.util.find_spec("ultralytics") is None:
        raise UltralyticsMissingError(
            "the bench exports the weights and runs Ultralytics' predict, which need the train extra: "
            "pip install 'lineqa[train]'"
        )
    from lineqa.training import ultralytics_adapter

    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    return ultralytics_adapter.load_ultralytics()


def export_onnx(weights: Path, imgsz: int, work: Path) -> Path:
    """Export a copy of the weights (Ultralytics writes the ONNX file beside them) with dynamic batch."""
    load_ultralytics(work / "ultralytics")
    from lineqa.training.ultralytics_adapter import export_onnx as ultralytics_export

    copy = work / "export" / weights.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(weights.read_bytes())
    return ultralytics_export(copy, imgsz)


def ultralytics_loop(weights: Path, paths: list[Path], imgsz: int, config_dir: Path, device: str = "cpu") -> Loop:
    """Ultralytics' own ``predict`` on the ``.pt`` weights, one image file per call, on ``device`` (``cpu``,
    or ``0`` for the first GPU), with torch using every usable core (left to itself, Ultralytics sets torch to
    one thread fewer than the cores)."""
    model = load_ultralytics(config_dir).YOLO(str(weights), task="detect")
    import torch  # present wherever Ultralytics is

    # Ultralytics sets torch's threads when it first picks the device (one fewer than the cores): one
    # warm-up call first, then every usable core, so the baseline is Ultralytics at its best on this machine.
    model.predict(str(paths[0]), imgsz=imgsz, device=device, verbose=False)
    torch.set_num_threads(usable_cores())

    def predict(k: int) -> object:
        return model.predict(str(paths[k % len(paths)]), imgsz=imgsz, device=device, verbose=False)

    return Loop("Ultralytics predict", predict, torch.get_num_threads)
