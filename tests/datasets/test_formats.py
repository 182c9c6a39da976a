"""Every importer on a small synthetic dataset written in its own format, then exported to YOLO and to COCO and
imported again: classes, image names, boxes, annotation status, split and group must all survive.

Images are padded to 200x160 (a width/height mix-up shows) and boxes are fractional (rounding shows).
"""

from __future__ import annotations

import functools
import itertools
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lineqa.datasets import synth
from lineqa.datasets.formats import READERS, WRITERS, detect_format, read_dataset
from lineqa.datasets.formats.deeppcb import CLASSES as DEEPPCB_CLASSES
from lineqa.datasets.model import Annotation, Box, LabelledImage

CLASSES = list(synth.CLASSES[synth.Surface.METAL])
HEIGHT = 160
WIDTH = 200


@dataclass(frozen=True)
class Sample:
    stem: str
    image: np.ndarray
    boxes: tuple[Box, ...]
    annotation: Annotation


@functools.cache
def samples() -> tuple[Sample, ...]:
    """Four parts with defects, one BACKGROUND and one MISSING image."""
    parts = (synth.generate_part(synth.Surface.METAL, seed, size=HEIGHT) for seed in itertools.count())
    defective = list(itertools.islice((part for part in parts if part.labels), 6))
    kinds = [Annotation.BOXES] * 4 + [Annotation.BACKGROUND, Annotation.MISSING]
    result = []
    for index, (part, kind) in enumerate(zip(defective, kinds, strict=True)):
        image = np.pad(part.image, ((0, 0), (0, WIDTH - HEIGHT), (0, 0)), mode="edge")
        boxes = tuple(Box(CLASSES[c], x1 + 0.25, y1 + 0.5, x2 + 0.75, y2 + 0.125) for c, x1, y1, x2, y2 in part.labels)
        result.append(Sample(f"part_{index}", image, boxes if kind is Annotation.BOXES else (), kind))
    return tuple(result)


def _write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _split(index: int) -> str:
    return "val" if index % 3 == 2 else "train"


# Each builder writes the samples in one format below ``root``; it returns the path to import, the classes and
# the images the importer must find.
Built = tuple[Path, list[str], list[LabelledImage]]


def _yolo(root: Path) -> Built:
    expected = []
    for index, sample in enumerate(samples()):
        split = _split(index)
        image = _write_image(root / "images" / split / f"{sample.stem}.png", sample.image)
        if sample.annotation is not Annotation.MISSING:
            rows = [
                f"{CLASSES.index(b.class_name)} {(b.x1 + b.x2) / 2 / WIDTH!r} {(b.y1 + b.y2) / 2 / HEIGHT!r} "
                f"{b.width / WIDTH!r} {b.height / HEIGHT!r}\n"
                for b in sample.boxes
            ]
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{sample.stem}.txt").write_text("".join(rows))
        expected.append(LabelledImage(f"{sample.stem}.png", image, sample.boxes, sample.annotation, split=split))
    config = {"train": "images/train", "val": "images/val", "names": CLASSES}
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return root, CLASSES, expected


def _coco(root: Path) -> Built:
    """COCO 2017's layout (train2017/, annotations/instances_train2017.json) with category ids 7, 9, 11."""
    category_ids = {name: 7 + 2 * index for index, name in enumerate(CLASSES)}
    categories = [{"id": category_ids[name], "name": name} for name in CLASSES]
    documents: dict[str, dict[str, list[object]]] = {}
    box_ids = itertools.count(1)
    expected = []
    for index, sample in enumerate(samples()):
        if sample.annotation is Annotation.MISSING:
            continue
        split = _split(index)
        document = documents.setdefault(split, {"images": [], "annotations": [], "categories": categories})
        image = _write_image(root / f"{split}2017" / f"{sample.stem}.png", sample.image)
        document["images"].append({"id": 100 + index, "file_name": image.name, "width": WIDTH, "height": HEIGHT})
        document["annotations"] += [
            {"id": next(box_ids), "image_id": 100 + index, "category_id": category_ids[b.class_name], "iscrowd": 0}
            | {"bbox": [b.x1, b.y1, b.width, b.height], "area": b.width * b.height}
            for b in sample.boxes
        ]
        expected.append(LabelledImage(image.name, image, sample.boxes, sample.annotation, split=split))
    (root / "annotations").mkdir()
    for split, document in documents.items():
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(document))
    return root, CLASSES, expected


def _voc(root: Path) -> Built:
    """Annotations/ and JPEGImages/; the first XML names its image without the suffix, as NEU-DET's do."""
    expected = []
    for index, sample in enumerate(samples()):
        image = _write_image(root / "JPEGImages" / f"{sample.stem}.png", sample.image)
        if sample.annotation is not Annotation.MISSING:
            objects = "".join(
                f"<object><name>{b.class_name}</name><difficult>0</difficult><bndbox><xmin>{b.x1}</xmin>"
                f"<ymin>{b.y1}</ymin><xmax>{b.x2}</xmax><ymax>{b.y2}</ymax></bndbox></object>"
                for b in sample.boxes
            )
            filename = sample.stem if index == 0 else image.name
            size = f"<size><width>{WIDTH}</width><height>{HEIGHT}</height><depth>3</depth></size>"
            xml = f"<annotation><folder>x</folder><filename>{filename}</filename>{size}{objects}</annotation>"
            (root / "Annotations").mkdir(exist_ok=True)
            (root / "Annotations" / f"{sample.stem}.xml").write_text(xml)
        expected.append(LabelledImage(f"JPEGImages/{image.name}", image, sample.boxes, sample.annotation))
    return root, sorted(CLASSES), expected


def _cvat(root: Path) -> Built:
    """A CVAT export: annotations.xml and images/; an image-level tag on the first image is passed over."""
    elements = []
    expected = []
    for index, sample in enumerate(samples()):
        if sample.annotation is Annotation.MISSING:
            continue
        image = _write_image(root / "images" / f"{sample.stem}.png", sample.image)
        shapes = "".join(
            f'<box label="{b.class_name}" source="manual" occluded="0" xtl="{b.x1}" ytl="{b.y1}" xbr="{b.x2}" '
            f'ybr="{b.y2}" z_order="0"></box>'
            for b in sample.boxes
        )
        tag = '<tag label="stain" source="manual"></tag>' if index == 0 else ""
        elements.append(
            f'<image id="{index}" name="{image.name}" width="{WIDTH}" height="{HEIGHT}">{tag}{shapes}</image>'
        )
        expected.append(LabelledImage(image.name, image, sample.boxes, sample.annotation))
    labels = "".join(f"<label><name>{name}</name><attributes></attributes></label>" for name in CLASSES)
    meta = f"<meta><task><id>1</id><labels>{labels}</labels></task></meta>"
    body = "".join(elements)
    xml = f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>{meta}{body}</annotations>'
    (root / "annotations.xml").write_text(xml)
    return root, CLASSES, expected


def _labelstudio(root: Path) -> Built:
    """Tasks with local-files URLs and with upload URLs (whose file names carry Label Studio's prefix); the
    MISSING image's only annotation was cancelled."""
    tasks = []
    expected = []
    for index, sample in enumerate(samples()):
        image = _write_image(root / "images" / f"{sample.stem}.png", sample.image)
        url = f"/data/local-files/?d=images/{image.name}" if index % 2 else f"/data/upload/3/3fa85f64-{image.name}"
        results = [
            {
                "id": f"r{index}-{number}",
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": WIDTH,
                "original_height": HEIGHT,
                "image_rotation": 0,
                "value": {
                    "x": b.x1 / WIDTH * 100,
                    "y": b.y1 / HEIGHT * 100,
                    "width": b.width / WIDTH * 100,
                    "height": b.height / HEIGHT * 100,
                    "rotation": 0,
                    "rectanglelabels": [b.class_name],
                },
            }
            for number, b in enumerate(sample.boxes)
        ]
        cancelled = sample.annotation is Annotation.MISSING
        annotation = {"id": index, "completed_by": 1, "result": results, "was_cancelled": cancelled}
        tasks.append({"id": index + 1, "data": {"image": url}, "annotations": [annotation], "predictions": []})
        expected.append(LabelledImage(f"images/{image.name}", image, sample.boxes, sample.annotation))
    (root / "export.json").write_text(json.dumps(tasks))
    return root, sorted(CLASSES), expected


def _deeppcb(root: Path) -> Built:
    """PCBData's layout in two groups, integer boxes, types 1-3; DeepPCB has no background or missing image."""
    lines = []
    expected = []
    for index, sample in enumerate(s for s in samples() if s.annotation is Annotation.BOXES):
        group = 10000 if index < 2 else 20000
        board = f"{group + index:05d}{index:03d}"
        folder = root / f"group{group}"
        image = _write_image(folder / str(group) / f"{board}_test.jpg", sample.image)
        _write_image(folder / str(group) / f"{board}_temp.jpg", sample.image)
        boxes = tuple(
            Box(DEEPPCB_CLASSES[CLASSES.index(b.class_name)], round(b.x1), round(b.y1), round(b.x2), round(b.y2))
            for b in sample.boxes
        )
        rows = [
            f"{b.x1:.0f} {b.y1:.0f} {b.x2:.0f} {b.y2:.0f} {DEEPPCB_CLASSES.index(b.class_name) + 1}\n" for b in boxes
        ]
        (folder / f"{group}_not").mkdir(exist_ok=True)
        (folder / f"{group}_not" / f"{board}.txt").write_text("".join(rows))
        lines.append(f"group{group}/{group}/{board}.jpg group{group}/{group}_not/{board}.txt")
        name = f"group{group}/{group}/{image.name}"
        expected.append(LabelledImage(name, image, boxes, Annotation.BOXES, group=f"group{group}"))
    (root / "trainval.txt").write_text("\n".join(lines))
    return root, list(DEEPPCB_CLASSES), expected


BUILDERS: dict[str, Callable[[Path], Built]] = {
    "yolo": _yolo,
    "coco": _coco,
    "voc": _voc,
    "cvat": _cvat,
    "labelstudio": _labelstudio,
    "deeppcb": _deeppcb,
}


def assert_same_images(actual: Sequence[LabelledImage], expected: Sequence[LabelledImage]) -> None:
    """Same images (by split and name, with the same bytes), boxes within 1e-3 px, same status and group."""
    found = {(image.split or "", image.name): image for image in actual}
    assert sorted(found) == sorted((image.split or "", image.name) for image in expected)
    for want in expected:
        got = found[want.split or "", want.name]
        assert (got.annotation, got.group) == (want.annotation, want.group), want.name
        assert [b.class_name for b in got.boxes] == [b.class_name for b in want.boxes], want.name
        corners = [c for b in want.boxes for c in (b.x1, b.y1, b.x2, b.y2)]
        assert [c for b in got.boxes for c in (b.x1, b.y1, b.x2, b.y2)] == pytest.approx(corners, abs=1e-3)
        assert got.path.read_bytes() == want.path.read_bytes(), want.name


def test_builders_cover_every_reader() -> None:
    assert set(BUILDERS) == set(READERS)


@pytest.mark.parametrize("source", list(BUILDERS))
def test_import_finds_what_the_files_say(source: str, tmp_path: Path) -> None:
    path, classes, expected = BUILDERS[source](tmp_path)
    assert detect_format(path) == source
    imported = READERS[source](path)
    assert (imported.format, imported.problems, imported.classes) == (source, [], classes)
    assert_same_images(imported.images, expected)


@pytest.mark.parametrize("target", list(WRITERS))
@pytest.mark.parametrize("source", list(BUILDERS))
def test_import_export_import_is_lossless(source: str, target: str, tmp_path: Path) -> None:
    imported = read_dataset(BUILDERS[source](tmp_path / source)[0])
    WRITERS[target](imported.classes, imported.images, tmp_path / "out")
    again = read_dataset(tmp_path / "out")
    assert (again.format, again.problems, again.classes) == (target, [], imported.classes)
    assert_same_images(again.images, imported.images)


def test_yolo_export_writes_a_data_yaml_for_training(tmp_path: Path) -> None:
    imported = read_dataset(_deeppcb(tmp_path / "pcb")[0])
    data_yaml = WRITERS["yolo"](imported.classes, imported.images, tmp_path / "out")
    config = yaml.safe_load(data_yaml.read_text())
    assert config["path"] == str((tmp_path / "out").resolve())
    assert (config["train"], config["nc"], config["names"]) == ("images/train", 6, dict(enumerate(DEEPPCB_CLASSES)))
    assert "val" not in config and "test" not in config
    first = "images/train/group10000/10000/10000000_test.jpg"
    assert config["lineqa"]["groups"][first] == "group10000"
    assert len(config["lineqa"]["unsplit"]) == len(imported.images)
    assert (tmp_path / "out/labels/train/group10000/10000/10000000_test.txt").is_file()
    source = imported.images[0].path.stat()
    assert (tmp_path / "out" / first).stat().st_ino == source.st_ino, "hard-linked on one file system"


def test_ultralytics_reads_the_yolo_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra (ultralytics)")
    adapter.load_ultralytics()
    from ultralytics.data import utils

    monkeypatch.setattr(utils, "check_font", lambda *args: None)  # it would download a font
    imported = read_dataset(_yolo(tmp_path / "src")[0])
    data_yaml = WRITERS["yolo"](imported.classes, imported.images, tmp_path / "out")
    data = utils.check_det_dataset(str(data_yaml), autodownload=False)
    assert (data["nc"], data["names"]) == (3, dict(enumerate(CLASSES)))
    exported = sorted((tmp_path / "out/images").rglob("*.png"))
    labels = [Path(label) for label in utils.img2label_paths([str(image) for image in exported])]
    missing = [image for image in imported.images if image.annotation is Annotation.MISSING]
    assert len(exported) == len(imported.images)
    assert sum(label.is_file() for label in labels) == len(exported) - len(missing)


def test_coco_export_follows_the_coco_layout(tmp_path: Path) -> None:
    imported = read_dataset(_voc(tmp_path / "voc")[0])
    folder = WRITERS["coco"](imported.classes, imported.images, tmp_path / "out")
    document = json.loads((folder / "instances.json").read_text())
    assert [c["id"] for c in document["categories"]] == [1, 2, 3]
    assert [c["name"] for c in document["categories"]] == sorted(CLASSES)
    entry = document["images"][0]
    assert (entry["width"], entry["height"], entry["lineqa_group"]) == (WIDTH, HEIGHT, None)
    assert (tmp_path / "out/images" / entry["file_name"]).is_file()
    box = document["annotations"][0]
    assert all(isinstance(value, float) for value in box["bbox"])
    assert box["area"] == pytest.approx(box["bbox"][2] * box["bbox"][3])
    assert box["iscrowd"] == 0
    assert [e.get("lineqa_annotation") for e in document["images"]].count("missing") == 1


def test_yolo_import_sizes_images_of_any_format(tmp_path: Path) -> None:
    """PNG and JPEG from their headers (also behind 120 KB of metadata), BMP by decoding."""
    image = samples()[0].image
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    segment = b"\xff\xe1" + struct.pack(">H", 60002) + bytes(60000)  # an APP1 (EXIF) segment
    files = {"a.png": cv2.imencode(".png", image)[1].tobytes(), "b.jpg": jpeg[:2] + segment * 2 + jpeg[2:]}
    files["c.bmp"] = cv2.imencode(".bmp", image)[1].tobytes()
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name, data in files.items():
        (tmp_path / "images" / name).write_bytes(data)
        (tmp_path / "labels" / name).with_suffix(".txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("train: images\nnames: [scratch]\n")
    dataset = read_dataset(tmp_path)
    assert dataset.problems == []
    assert {image.boxes for image in dataset.images} == {(Box("scratch", 50, 40, 150, 120),)}
