"""What a training run is given: labelled images only, a usable split, background images kept in proportion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lineqa.datasets.manifest import Manifest
from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.training.data import write_training_set
from lineqa.training.errors import TrainingError


def images(tmp_path: Path, spec: list[tuple[str, str | None, Annotation]]) -> list[LabelledImage]:
    out = []
    for name, split, annotation in spec:
        path = tmp_path / "src" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.zeros((32, 32, 3), np.uint8))
        boxes = (Box("dent", 4, 4, 12, 12),) if annotation is Annotation.BOXES else ()
        out.append(LabelledImage(f"{name}.png", path, boxes, annotation, split=split))
    return out


def test_unlabelled_images_are_left_out_and_backgrounds_thinned(tmp_path: Path) -> None:
    spec = [(f"d{i}", "train", Annotation.BOXES) for i in range(9)]
    spec += [(f"g{i}", "train", Annotation.BACKGROUND) for i in range(9)]
    spec += [("v0", "val", Annotation.BOXES), ("v1", "val", Annotation.BACKGROUND), ("t0", "test", Annotation.BOXES)]
    spec += [("m0", "train", Annotation.MISSING)]
    found = write_training_set("t/d@1", Manifest(("dent",), ()), images(tmp_path, spec), tmp_path / "out")
    assert found.images_per_split == {"test": 1, "train": 10, "val": 2}  # 9 defective + 1 background = 10 %
    assert found.left_out_unlabelled == 1 and found.left_out_background == 8
    config = yaml.safe_load(found.data_yaml.read_text())
    assert config["names"] == {0: "dent"} and config["test"] == "images/test"
    assert not (tmp_path / "out" / "images" / "train" / "m0.png").exists()
    write_training_set("t/d@1", Manifest(("dent",), ()), images(tmp_path, spec), tmp_path / "again")
    kept = sorted(p.name for p in (tmp_path / "again" / "images" / "train").iterdir())
    assert kept == sorted(p.name for p in (tmp_path / "out" / "images" / "train").iterdir())  # the same ones


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([("a", None, Annotation.BOXES), ("b", "val", Annotation.BOXES)], "run 'lineqa datasets split'"),
        ([("a", "train", Annotation.BOXES)], "train and val non-empty"),
        ([("a", "train", Annotation.BACKGROUND), ("b", "val", Annotation.BOXES)], "no labelled defect"),
    ],
)
def test_a_version_that_cannot_train_is_refused(
    tmp_path: Path, spec: list[tuple[str, str | None, Annotation]], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        write_training_set("t/d@1", Manifest(("dent",), ()), images(tmp_path, spec), tmp_path / "out")
