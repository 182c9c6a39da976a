"""The one module that calls Ultralytics: offline settings, training, ONNX export, reference predictions.

Ultralytics reaches for the network on its own (pretrained weights, fonts, pip installs of missing
packages, hub sync) and keeps per-machine settings in a user directory. Here it runs offline with
auto-install off and its settings directory inside lineqa's home, so a run is reproducible and never
downloads. Its environment switches are read when Ultralytics is first imported, so the import happens only
through :func:`load_ultralytics`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lineqa.home import default_home
from training.errors import TrainingError
from vision.detections import Detections

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
    extra: dict[str, Any] = field(default_factory=dict)


def train(spec: TrainSpec) -> Path:
    """Train a detector; return the path of its best weights (``.pt``)."""
    ul = load_ultralytics()
    model = ul.YOLO(spec.model)
    model.train(
        data=str(spec.data_yaml),
        epochs=spec.epochs,
        imgsz=spec.imgsz,
        batch=spec.batch,
        device=spec.device,
        seed=spec.seed,
        deterministic=True,
        workers=spec.workers,
        project=str(spec.run_dir.parent),
        name=spec.run_dir.name,
        exist_ok=True,
        plots=False,  # plotting fetches a font from the network
        amp=spec.device != "cpu",
        **spec.extra,
    )
    best = spec.run_dir / "weights" / "best.pt"
    if not best.is_file():
        raise TrainingError(f"training finished without writing {best}")
    return best


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
) -> list[Detections]:
    """Ultralytics' own ``predict`` on image files: the reference the serving pipeline must match.

    ``end_to_end`` selects a YOLO26 ``.pt`` model's NMS-free head (``nms=False``), as its end-to-end ONNX export
    uses; by default ``.pt`` predictions use the NMS head.
    """
    ul = load_ultralytics()
    model = ul.YOLO(str(model_path), task="detect")
    options: dict[str, Any] = {"imgsz": imgsz, "conf": conf, "iou": iou, "max_det": max_det, "verbose": False}
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
