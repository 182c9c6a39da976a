"""A reference model from training to judgement, on synthetic boards each paired with its clean twin.

``lineqa train --input reference`` must train on the vision core's (frame, reference, difference) input and say
so in the run and in the exported ONNX file; ``models add`` shows it; ``predict`` refuses to guess without a
reference and sends a frame it cannot align to REVIEW; ``evaluate`` builds each sample's input from its pair and
reports escapes and false rejects, and refuses a dataset without references. An image run on the same data
still trains on the images themselves. One epoch from the model YAML: the figures mean nothing, the plumbing
everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from lineqa.training.reshoot import reshot_input
from lineqa.vision.detector import INPUT_METADATA_KEY
from lineqa.vision.image import load_image
from lineqa.vision.reference import ENCODING
from tests.helpers.board_pairs import write_board_pairs
from tests.helpers.boards import board

pytest.importorskip("lineqa.training.ultralytics_adapter", reason="training needs the train extra")
pytestmark = pytest.mark.slow

TINY = ["--epochs", "1", "--imgsz", "160", "--batch", "4", "--workers", "0", "--device", "cpu"]


def lineqa(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LINEQA_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "lineqa.cli", *args], capture_output=True, text=True, env=environment, timeout=600
    )


def ok(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = lineqa(home, *args)
    assert done.returncode == 0, f"lineqa {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def add_dataset(home: Path, ref: str, source: Path, ratios: str, *flags: str) -> None:
    ok(home, "datasets", "import", ref, str(source), *flags)
    ok(home, "datasets", "split", ref, "--ratios", ratios)
    ok(home, "datasets", "snapshot", ref)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three versions: boards to train on, held-out boards (3 defective, 3 good), and the training boards
    without their references; then one reference run, trained and exported."""
    home = tmp_path_factory.mktemp("home")
    boards = write_board_pairs(home / "src-boards", defective=8, good=2)
    add_dataset(home, "acme/boards", boards, "train=0.7,val=0.3")
    held = write_board_pairs(home / "src-held", defective=3, good=3, first_seed=100)
    add_dataset(home, "acme/held", held, "test=1")
    add_dataset(home, "acme/plain", boards, "train=0.7,val=0.3", "--no-references")
    ok(home, "train", "--dataset", "acme/boards@1", "--base", "yolo11n.yaml", "--name", "ref", "--input", "reference",
       *TINY)  # fmt: skip
    exported = lineqa(home, "export", "ref")
    # A one-epoch model may detect nothing worth comparing (exit 1, "not shown"); a difference is a failure.
    assert exported.returncode in (0, 1) and "PARITY FAILED" not in exported.stdout, exported.stdout + exported.stderr
    return home


def test_the_run_trains_on_the_pairs_and_records_the_encoding(home: Path) -> None:
    record = json.loads((home / "runs" / "ref" / "run.json").read_text())
    assert record["status"] == "trained" and record["input_encoding"] == ENCODING and record["input_reshot"] is True
    assert record["hyperparameters"]["hsv_h"] == 0.0 and record["hyperparameters"]["hsv_s"] == 0.0
    written = sorted((home / "runs" / "ref" / "data" / "images" / "train").rglob("*.png"))
    assert written, "the reference input is written as PNG"
    for path in written[:2]:
        test = home / "src-boards" / path.relative_to(home / "runs" / "ref" / "data" / "images" / "train")
        test = test.with_suffix(".jpg")
        expected = reshot_input(load_image(test), load_image(test.with_name(test.name.replace("_test", "_temp"))))
        assert np.array_equal(cv2.imread(str(path)), expected)


def test_the_export_carries_the_encoding_beside_ultralytics_keys(home: Path) -> None:
    record = json.loads((home / "runs" / "ref" / "run.json").read_text())
    assert record["export"]["input_encoding"] == ENCODING
    metadata = {p.key: p.value for p in onnx.load(record["export"]["onnx"]).metadata_props}
    assert metadata[INPUT_METADATA_KEY] == ENCODING
    assert "names" in metadata and "imgsz" in metadata and "stride" in metadata
    added = ok(home, "models", "add", "boards", record["export"]["onnx"])
    assert f"input {ENCODING}: every frame must come with its reference" in added.stdout
    shown = json.loads(ok(home, "models", "show", "boards").stdout)
    assert shown["input_encoding"] == ENCODING


def test_predict_needs_a_reference_and_never_passes_an_unaligned_frame(home: Path, tmp_path: Path) -> None:
    onnx_file = str(home / "runs" / "ref" / "export" / "model.onnx")
    frame = home / "src-held" / "group10100" / "10100" / "10100000_test.jpg"
    refused = lineqa(home, "predict", str(tmp_path / "not-there.jpg"), "--model", onnx_file)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "was trained on images with their reference: give --reference FILE" in refused.stderr  # before reading

    judged = ok(
        home, "predict", str(frame), "--model", onnx_file, "--reference", str(frame.with_name("10100000_temp.jpg"))
    )
    record = json.loads(judged.stdout)
    assert record["alignment"]["aligned"] and record["verdict"] in ("PASS", "REVIEW", "FAIL")

    stranger = tmp_path / "other-board.png"
    cv2.imwrite(str(stranger), np.rot90(board(seed=999)))
    unaligned = json.loads(ok(home, "predict", str(frame), "--model", onnx_file, "--reference", str(stranger)).stdout)
    assert not unaligned["alignment"]["aligned"] and unaligned["verdict"] != "PASS"
    assert any(reason.startswith("not aligned with the golden sample") for reason in unaligned["reasons"])


def test_evaluate_builds_inputs_from_pairs_and_reports_escapes_and_false_rejects(home: Path) -> None:
    done = ok(home, "evaluate", "--run", "ref", "--dataset", "acme/held@1", "--split", "test")
    metrics = json.loads((home / "runs" / "ref" / "eval" / "test" / "metrics.json").read_text())
    assert metrics["input_encoding"] == ENCODING and metrics["coco_check"]["agrees"]
    inspection = metrics["inspection"]
    assert (inspection["defective_parts"], inspection["good_parts"]) == (3, 3)
    assert inspection["escape_rate"] is not None and inspection["false_reject_rate"] is not None
    assert "escapes" in done.stdout and "false rejects" in done.stdout

    refused = lineqa(home, "evaluate", "--run", "ref", "--dataset", "acme/plain@1", "--split", "val")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "was trained on images with their reference, and" in refused.stderr and "has none" in refused.stderr


def test_reference_training_refuses_samples_without_references_and_a_changed_resume(home: Path) -> None:
    refused = lineqa(home, "train", "--dataset", "acme/plain@1", "--name", "no-refs", "--input", "reference", *TINY)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--input reference needs a reference for every sample; group1000" in refused.stderr
    assert not (home / "runs" / "no-refs").exists()
    resumed = lineqa(home, "train", "--resume", "ref", "--input", "image")
    assert resumed.returncode == 2 and f"run ref trains on '{ENCODING}' input; --resume keeps it" in resumed.stderr


def test_an_image_run_on_the_same_data_trains_on_the_images(home: Path, tmp_path: Path) -> None:
    ok(home, "train", "--dataset", "acme/boards@1", "--base", "yolo11n.yaml", "--name", "img", *TINY)
    record = json.loads((home / "runs" / "img" / "run.json").read_text())
    assert record["input_encoding"] == "image"
    assert not list((home / "runs" / "img" / "data" / "images" / "train").rglob("*.png"))  # the JPEGs themselves
    lineqa(home, "export", "img")
    onnx_file = home / "runs" / "img" / "export" / "model.onnx"
    assert INPUT_METADATA_KEY not in {p.key for p in onnx.load(str(onnx_file)).metadata_props}
    frame = home / "src-held" / "group10100" / "10100" / "10100000_test.jpg"
    record = json.loads(ok(home, "predict", str(frame), "--model", str(onnx_file)).stdout)
    assert "alignment" not in record  # no recipe reference, no reference model: nothing to align
    ok(home, "evaluate", "--run", "img", "--dataset", "acme/held@1", "--split", "test", "--out", str(tmp_path / "e"))
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["input_encoding"] == "image"


ASSET = Path(__file__).resolve().parents[1] / "assets" / "deeppcb-yolo11n-320.pt"


def test_the_parity_gate_compares_both_sides_on_the_encoded_inputs(home: Path) -> None:
    """A one-epoch model from the YAML detects nothing to compare; the repository's DeepPCB model, fine-tuned
    gently on the pairs, does, and its export must then match Ultralytics detection for detection."""
    gentle = ["--set", "lr0=0.0001", "--set", "warmup_epochs=0", "--set", "mosaic=0", "--set", "close_mosaic=0"]
    ok(home, "train", "--dataset", "acme/boards@1", "--base", str(ASSET), "--name", "ref-asset", "--input",
       "reference", *TINY, *gentle)  # fmt: skip
    exported = ok(home, "export", "ref-asset")
    assert "parity passed" in exported.stdout
    report = json.loads((home / "runs" / "ref-asset" / "export" / "parity.json").read_text())
    assert report["matched_detections"] > 0 and all(i["image"].endswith(".png") for i in report["images"])
