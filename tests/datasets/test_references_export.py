"""The exporters' reference seam: given ``compose(frame, reference)`` they write the model input built from
each sample and its reference instead of the image, keep its labels, and stop at a sample with no reference,
naming it. ``lineqa datasets export --input reference`` takes ``compose`` from the vision core, and says so
plainly where the vision core lacks it.

The exporters are tested with a small compose of the tests' own (grey frame, grey reference, difference), not
the vision core's encoding: what is under test is that the exporter feeds the pair through and writes what
comes back, whatever the encoding."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lineqa.cli import main
from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats import WRITERS, read_dataset
from lineqa.datasets.model import ImportedDataset
from lineqa.db import sqlite_url
from lineqa.vision.image import load_image
from tests.datasets.test_cli import lineqa
from tests.datasets.test_references import boards, write


def stack(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Grey frame, grey reference and their absolute difference as one 3-channel image."""
    grey = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in (frame, reference)]
    return np.dstack([*grey, cv2.absdiff(*grey)])


def referenced(folder: Path) -> ImportedDataset:
    """The synthetic boards that have a reference (d has none)."""
    data = boards(folder)
    data.images = [image for image in data.images if image.reference is not None]
    return data


def test_yolo_export_writes_the_composed_input_with_the_images_labels(tmp_path: Path) -> None:
    data = referenced(tmp_path / "src")
    data_yaml = WRITERS["yolo"](data.classes, data.images, tmp_path / "ref", compose=stack)
    plain = WRITERS["yolo"](data.classes, data.images, tmp_path / "plain")
    for image in data.images:
        assert image.reference is not None
        written = cv2.imread(str(tmp_path / "ref/images/train" / image.name))
        assert written is not None
        expected = stack(load_image(image.path), load_image(image.reference))
        assert np.array_equal(written, expected)  # PNG: the difference channel survives to the bit
        stem = Path(image.name).stem
        label = (tmp_path / "ref/labels/train" / f"{stem}.txt").read_text()
        assert label == (tmp_path / "plain/labels/train" / f"{stem}.txt").read_text() != ""
    assert yaml.safe_load(data_yaml.read_text())["lineqa"]["groups"] == {f"images/train/{n}.png": "g" for n in "abc"}
    assert plain.is_file()
    again = read_dataset(tmp_path / "ref")
    assert sorted(image.name for image in again.images) == ["a.png", "b.png", "c.png"]
    assert [len(image.boxes) for image in again.images] == [1, 1, 1]


def test_coco_export_names_the_composed_inputs_as_png(tmp_path: Path) -> None:
    data = referenced(tmp_path / "src")
    as_jpeg = [write(image.path.with_suffix(".jpg"), load_image(image.path)) for image in data.images]
    data.images = [replace(i, name=p.name, path=p) for i, p in zip(data.images, as_jpeg, strict=True)]
    folder = WRITERS["coco"](data.classes, data.images, tmp_path / "ref", compose=stack)
    coco = json.loads((folder / "instances.json").read_text())
    assert [entry["file_name"] for entry in coco["images"]] == ["a.png", "b.png", "c.png"]
    assert all((entry["width"], entry["height"]) == (128, 96) for entry in coco["images"])
    written = cv2.imread(str(tmp_path / "ref/images/a.png"))
    assert written is not None and written.shape == (96, 128, 3)
    assert len(coco["annotations"]) == 3


def test_without_compose_the_images_are_exported_as_they_are(tmp_path: Path) -> None:
    data = boards(tmp_path / "src")  # d has no reference: fine for an image export
    WRITERS["yolo"](data.classes, data.images, tmp_path / "out")
    for image in data.images:
        assert (tmp_path / "out/images/train" / image.name).read_bytes() == image.path.read_bytes()


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_sample_without_a_reference_stops_a_reference_export(writer: str, tmp_path: Path) -> None:
    data = boards(tmp_path / "src")
    with pytest.raises(DatasetError, match=r"needs a reference for every sample; none for d\.png$"):
        WRITERS[writer](data.classes, data.images, tmp_path / "out", compose=stack)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_compose_that_changes_the_size_is_refused_naming_the_sample(tmp_path: Path) -> None:
    data = referenced(tmp_path / "src")

    def halve(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
        return stack(frame, reference)[::2, ::2]

    with pytest.raises(DatasetError, match=r"a\.png: the model input is uint8 \(48, 64, 3\)"):
        WRITERS["yolo"](data.classes, data.images, tmp_path / "out", compose=halve)


def version_with_references(home: Path, tmp_path: Path) -> None:
    """acme/pcb@1 in ``home``: the synthetic boards that have a reference."""
    home.mkdir()
    engine = open_catalog_database(sqlite_url(home / "lineqa.db"))
    try:
        catalog = Catalog(engine, ContentStore(home / "images"), "acme")
        catalog.import_images("pcb", referenced(tmp_path / "src"))
        catalog.snapshot("pcb")
    finally:
        engine.dispose()


def test_reference_input_without_the_vision_step_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    version_with_references(home, tmp_path)
    monkeypatch.setitem(sys.modules, "lineqa.vision.reference", None)  # an installation without the module
    out = tmp_path / "out"
    code = main(["datasets", "--home", str(home), "export", "acme/pcb@1", "--input", "reference", "--out", str(out)])
    assert code == 2
    assert "error: reference input needs lineqa.vision.reference" in capsys.readouterr().err
    assert not out.exists()


def test_reference_input_uses_the_vision_cores_model_input(tmp_path: Path) -> None:
    reference = importlib.import_module("lineqa.vision.reference")
    if not hasattr(reference, "model_input"):
        pytest.skip("lineqa.vision.reference has no model_input(frame, reference) yet: nothing to export with")
    home = tmp_path / "home"
    version_with_references(home, tmp_path)
    out = tmp_path / "out"
    done = lineqa(home, "--json", "export", "acme/pcb@1", "--input", "reference", "--out", str(out))
    assert json.loads(done.stdout)["input"] == "reference"
    frame, golden = load_image(tmp_path / "src/a.png"), load_image(tmp_path / "src/golden/one.png")
    written = cv2.imread(str(out / "images/train/a.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(written, reference.model_input(frame, golden))
