"""The one module that calls Ultralytics: offline settings, training, ONNX export, reference predictions.

Ultralytics reaches for the network on its own (pretrained weights, fonts, pip installs of missing
packages, hub sync) and keeps per-machine settings in a user directory. Here it runs offline with
auto-install off and its settings directory inside lineqa's home, so a run is reproducible and never
downloads. Its environment switches are read when Ultralytics is first imported, so the import happens only
through :func:`load_ultralytics`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lineqa.cpu import usable_cores
from lineqa.home import default_home
from lineqa.training.errors import TrainingError
from lineqa.vision.detections import Detections

OFFLINE_ENVIRONMENT = {
    "YOLO_OFFLINE": "1",  # no online checks, no asset downloads
    "YOLO_AUTOINSTALL": "false",  # never pip-install a missing package behind the user's back
}
# Settings that phone home or load experiment-tracker integrations; all off.
QUIET_SETTINGS = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "vscode_msg")


def load_ultralytics() -> ModuleType:
    """Import Ultralytics offline, with its settings file under lineqa's home; return the module."""
    if "ultralytics" not in sys.modules:
        os.environ.update(OFFLINE_ENVIRONMENT)
        settings_dir = default_home() / "ultralytics"
        settings_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(settings_dir))
    import ultralytics

    quiet = {key: False for key in QUIET_SETTINGS if key in ultralytics.settings}
    ultralytics.settings.update(quiet)  # type: ignore[no-untyped-call]
    return ultralytics


def pinned_settings(run_dir: Path) -> dict[str, Any]:
    """Ultralytics' per-machine folders, pinned to the run: relative dataset paths resolve inside the run's own
    data, and nothing is written to (or looked up in) folders that depend on where the command was started."""
    return {
        "datasets_dir": str(run_dir / "data"),
        "weights_dir": str(run_dir / "weights"),
        "runs_dir": str(run_dir.parent),
        **{key: False for key in QUIET_SETTINGS},
    }


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA GPU when torch sees one, else the CPU; anything else is passed as given
    (``0``, ``0,1`` for Ultralytics' own multi-GPU DDP mode, ``cpu``, ``mps``)."""
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class TrainSpec:
    """One training run. ``model`` is an Ultralytics model YAML (from scratch) or a local ``.pt``."""

    model: str
    data_yaml: Path
    run_dir: Path
    epochs: int = 50
    imgsz: int = 640
    batch: int = 16
    device: str = "cpu"
    seed: int = 0
    workers: int = 2
    threads: int | None = None  # CPU training threads; None: every core this process may use
    extra: dict[str, Any] = field(default_factory=dict)


def cpu_threads(requested: int | None) -> int:
    """The torch threads a CPU run trains with: ``requested``, or every usable core."""
    return requested or usable_cores()


def _set_threads_callback(threads: int | None) -> Callable[[Any], None]:
    """An Ultralytics callback that gives CPU training ``threads`` torch threads (default: every core).

    Ultralytics trains on a CPU with one core fewer than the machine has, keeping one for data-loader workers,
    and then runs no workers on a CPU: the loading happens between steps on the training thread, so the kept
    core idles. On a 2-core machine that is half of it (half an epoch of DeepPCB at 320 px: 1.83x faster on both).
    Set after Ultralytics picked its device and before the first step."""

    def use_threads(trainer: Any) -> None:
        if trainer.device.type == "cpu":
            import torch

            torch.set_num_threads(cpu_threads(threads))
            logging.getLogger("ultralytics").info("CPU training threads: %d", torch.get_num_threads())

    return use_threads


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy Ultralytics' log lines (per-epoch metrics, warnings) into the run's own log file."""
    ul_logger = logging.getLogger("ultralytics")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    ul_logger.addHandler(handler)
    try:
        yield
    finally:
        ul_logger.removeHandler(handler)
        handler.close()


def _best_weights(run_dir: Path) -> Path:
    best = run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise TrainingError(f"training finished without writing {best}")
    return best


def train(spec: TrainSpec) -> Path:
    """Train a detector; return the path of its best weights (``.pt``)."""
    ul = load_ultralytics()
    device = resolve_device(spec.device)
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    ul.settings.update(pinned_settings(spec.run_dir))
    model = ul.YOLO(spec.model)
    model.add_callback("on_pretrain_routine_start", _set_threads_callback(spec.threads))
    with _log_to(spec.run_dir / "train.log"):
        model.train(
            data=str(spec.data_yaml),
            epochs=spec.epochs,
            imgsz=spec.imgsz,
            batch=spec.batch,
            device=device,
            seed=spec.seed,
            deterministic=True,
            workers=spec.workers,
            project=str(spec.run_dir.parent),
            name=spec.run_dir.name,
            exist_ok=True,
            plots=False,  # plotting fetches a font from the network
            amp=device not in ("cpu", "mps"),
            **spec.extra,
        )
    return _best_weights(spec.run_dir)


def resume(run_dir: Path, threads: int | None = None) -> Path:
    """Continue an interrupted run from its ``last.pt`` with the arguments it was started with (on a CPU,
    ``threads`` training threads, default every core)."""
    last = run_dir / "weights" / "last.pt"
    if not last.is_file():
        raise TrainingError(f"{run_dir} has no weights/last.pt to resume from")
    ul = load_ultralytics()
    ul.settings.update(pinned_settings(run_dir))
    model = ul.YOLO(str(last))
    model.add_callback("on_pretrain_routine_start", _set_threads_callback(threads))
    with _log_to(run_dir / "train.log"):
        try:
            model.train(resume=True)
        except AssertionError as exc:  # Ultralytics' way of saying the run already finished
            raise TrainingError(f"cannot resume {run_dir}: {exc}") from None
    return _best_weights(run_dir)


def checkpoint_names(weights: Path) -> list[str]:
    """The class names a ``.pt`` checkpoint was trained on, in id order."""
    load_ultralytics()
    import torch

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    model = checkpoint.get("ema") or checkpoint["model"]
    names = model.names
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def remap_classes(weights: Path, names: list[str], out: Path) -> dict[str, Any]:
    """A copy of ``weights`` whose class head predicts ``names``; return what was carried over.

    Everything but the per-class rows of the classification convolutions has the same shape and is copied.
    A class the base already knew (same name) keeps its trained row, so a tenant's "scratch" starts from the
    pool's "scratch"; a new class starts from Ultralytics' fresh initialisation (prior bias for rare objects).
    """
    load_ultralytics()
    import torch
    from ultralytics.nn import tasks

    detection_model: Any = tasks.DetectionModel  # untyped upstream

    checkpoint = torch.load(weights, map_location="cpu", weights_only=False)
    old: Any = (checkpoint.get("ema") or checkpoint["model"]).float()
    old_names = checkpoint_names(weights)
    index = {name: i for i, name in enumerate(old_names)}
    new = detection_model(old.yaml, nc=len(names), verbose=False)
    # The tensors that hold one row per class are those whose shape changes with the class count.
    probe = detection_model(old.yaml, nc=len(old_names) + 1, verbose=False).state_dict()
    old_state, state = old.state_dict(), new.state_dict()
    per_class = {key for key, tensor in old_state.items() if key in probe and probe[key].shape != tensor.shape}
    rows_kept = 0
    for key, tensor in state.items():
        if key not in old_state:
            continue
        if key not in per_class:
            state[key] = old_state[key]
            continue
        for row, name in enumerate(names):
            if name in index:
                tensor[row] = old_state[key][index[name]]
                rows_kept += 1
    new.load_state_dict(state)
    new.names = dict(enumerate(names))
    new.args = getattr(old, "args", {})
    torch.save({"model": new, "ema": None, "train_args": {}, "epoch": -1, "optimizer": None}, out)
    return {"base_classes": old_names, "classes": names, "kept": [n for n in names if n in index], "rows": rows_kept}


def export_onnx(weights: Path, imgsz: int, *, end_to_end: bool = False, dynamic: bool = True) -> Path:
    """Export weights to ONNX (dynamic batch). ``end_to_end`` keeps a YOLO26 head NMS-free in the graph."""
    ul = load_ultralytics()
    options: dict[str, Any] = {"format": "onnx", "imgsz": imgsz, "dynamic": dynamic, "simplify": True}
    if end_to_end:
        options["nms"] = False  # Ultralytics 8.4 exports the end-to-end branch only when nms is False
    return Path(ul.YOLO(str(weights)).export(**options))


def reference_predict(
    model_path: Path,
    image_paths: list[Path],
    *,
    imgsz: int,
    conf: float,
    iou: float,
    max_det: int = 300,
    end_to_end: bool = False,
    rect: bool = True,
) -> list[Detections]:
    """Ultralytics' own ``predict`` on image files: the reference the serving pipeline must match.

    ``end_to_end`` selects a YOLO26 ``.pt`` model's NMS-free head (``nms=False``), as its end-to-end ONNX export
    uses; by default ``.pt`` predictions use the NMS head. ``rect=False`` letterboxes to the full square input,
    as a model served by Triton (fixed input size) sees every image.
    """
    ul = load_ultralytics()
    model = ul.YOLO(str(model_path), task="detect")
    options: dict[str, Any] = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "verbose": False}
    options["rect"] = rect
    if end_to_end:
        options["nms"] = False
    results = []
    for path in image_paths:
        (result,) = model.predict(str(path), **options)
        boxes = result.boxes
        results.append(
            Detections(
                boxes.xyxy.cpu().numpy(),
                boxes.conf.cpu().numpy(),
                boxes.cls.cpu().numpy().astype(np.int64),
            )
        )
    return results
