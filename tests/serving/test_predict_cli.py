"""``lineqa predict`` as a user runs it: JSON lines, overlays, and clear errors that never stop the run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest

from lineqa.datasets.synth import Surface, generate_part
from lineqa.serving.errors import ModelLoadError
from lineqa.serving.onnx_model import OnnxModel
from lineqa.vision.yolo_output import HeadKind


def lineqa(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lineqa.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"part{i}.png"), generate_part(Surface.METAL, i).image)
    cv2.imwrite(str(folder / "wide.jpg"), np.full((240, 900, 3), 128, np.uint8))
    good = (folder / "part0.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return folder


def test_spec_read_from_the_exported_models(tiny_models: dict[str, Path]) -> None:
    nms_model, e2e_model = OnnxModel(tiny_models["yolo11n"]), OnnxModel(tiny_models["yolo26n"])
    for model in (nms_model, e2e_model):
        assert model.spec.class_names == ("scratch", "dent", "stain")
        assert model.spec.input_hw == (320, 320) and model.spec.max_batch > 1  # dynamic batch export
    assert nms_model.spec.head is HeadKind.NMS and e2e_model.spec.head is HeadKind.END_TO_END


@pytest.mark.parametrize("name", ["yolo11n", "yolo26n"])
def test_json_lines_and_overlays(name: str, tiny_models: dict[str, Path], images: Path, tmp_path: Path) -> None:
    out, overlays = tmp_path / "out.jsonl", tmp_path / "overlays"
    missing = tmp_path / "missing.jpg"
    result = lineqa("predict", "--model", tiny_models[name], "--conf", "0.001", "--output", out,
                    "--save-dir", overlays, images, missing)  # fmt: skip
    assert result.returncode == 1  # two inputs could not be read
    assert "2 image(s) could not be read" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [Path(r["image"]).name for r in records] == [
        "part0.png", "part1.png", "part2.png", "truncated.png", "wide.jpg", "missing.jpg",
    ]  # fmt: skip
    errors = {Path(r["image"]).name: r["error"] for r in records if "error" in r}
    assert errors["truncated.png"]["type"] == "CorruptImageError" and "IEND" in errors["truncated.png"]["message"]
    assert errors["missing.jpg"]["type"] == "FileNotFoundError"
    judged = [r for r in records if "error" not in r]
    for record in judged:
        assert record["verdict"] in {"PASS", "FAIL", "REVIEW"}
        assert len(record["recipe"]["version"]) == 64 and record["model"]["name"] == tiny_models[name].stem
        for det in record["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= record["width"] and 0 <= y1 <= y2 <= record["height"]
            assert det["class_name"] in {"scratch", "dent", "stain"}
        overlay = cv2.imread(record["overlay"])
        assert overlay.shape == (record["height"], record["width"], 3)
    assert sum(len(r["detections"]) for r in judged) > 0  # conf 0.001 on an untrained model: boxes to draw


def test_tiling_option_runs_windows(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    big = np.concatenate([generate_part(Surface.METAL, i, 320).image for i in range(4)], axis=1)
    cv2.imwrite(str(tmp_path / "strip.png"), big)
    out = tmp_path / "out.jsonl"
    result = lineqa("predict", "--model", tiny_models["yolo11n"], "--tile", "320", "--conf", "0.001", "--output", out,
                    tmp_path / "strip.png")  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["width"] == 1280 and record["detections"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d, m: ["--model", d / "nope.onnx"], "model file not found"),
        (lambda d, m: ["--model", d / "junk.onnx"], "ONNX Runtime cannot load it"),
        (lambda d, m: ["--model", m, "--recipe", d / "typo.yaml"], r"rules for \['scrach'\]"),
        (lambda d, m: ["--model", m, "--recipe", d / "bad.yaml"], r"defaults\.fail_confidence"),
        (lambda d, m: ["--model", m, "--device", "cuda"], "needs ONNX Runtime's CUDAExecutionProvider"),
    ],
    ids=["missing-model", "not-onnx", "unknown-class", "invalid-recipe", "no-cuda"],
)
def test_user_errors_are_one_line_not_tracebacks(
    setup,
    message: str,
    tiny_models: dict[str, Path],
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"this is not a model")
    (tmp_path / "typo.yaml").write_text("id: r\nmodel: {name: m}\nclasses: {scrach: {fail_confidence: 0.3}}\n")
    (tmp_path / "bad.yaml").write_text("id: r\nmodel: {name: m}\ndefaults: {fail_confidence: 7}\n")
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), generate_part(Surface.METAL, 0).image)
    args = setup(tmp_path, tiny_models["yolo11n"])
    if "cuda" in args and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA: the missing-provider error cannot happen here")
    result = lineqa("predict", *args, image)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("lineqa predict: error:")
    assert re.search(message, result.stderr), result.stderr


def test_model_load_error_is_typed(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        OnnxModel(tmp_path / "absent.onnx")
