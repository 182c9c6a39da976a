"""Fixtures for serving tests: small real ONNX models exported by Ultralytics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineqa.datasets.synth import Surface, write_yolo_dataset


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """YOLO11n (NMS head) and YOLO26n (end-to-end head) at 320 for three classes, trained one epoch.

    Their detections are close to meaningless; they exercise loading, shapes, batching, tiling and every
    error path with a real exported graph. What detections must equal is tested in tests/training.
    """
    adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")
    out = tmp_path_factory.mktemp("tiny-models")
    data = write_yolo_dataset(out / "data", Surface.METAL, train=8, val=2)
    models = {}
    for name, end_to_end in (("yolo11n", False), ("yolo26n", True)):
        spec = adapter.TrainSpec(f"{name}.yaml", data, out / "runs" / name, epochs=1, imgsz=320, batch=4, workers=0)
        models[name] = adapter.export_onnx(adapter.train(spec), 320, end_to_end=end_to_end)
    return models


@pytest.fixture(scope="session")
def plain_exports(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same two models exported as a user would by default: ``yolo export model=X.pt format=onnx
    imgsz=320``: a fixed batch of 1 (and, for YOLO26, its end-to-end head)."""
    adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")
    out = tmp_path_factory.mktemp("plain-exports")
    exports = {}
    for name in ("yolo11n", "yolo26n"):
        weights = tiny_models[name].with_suffix(".pt")
        copy = out / name / weights.name
        copy.parent.mkdir()
        copy.write_bytes(weights.read_bytes())
        exports[name] = Path(adapter.load_ultralytics().YOLO(str(copy)).export(format="onnx", imgsz=320))
    return exports
