"""Bad input files: a record that cannot be read is a problem naming its file and line (or element) and the
import goes on; a file that cannot be read at all is one DatasetFormatError; never a bare KeyError or ValueError.
Exporters refuse what would lose or overwrite data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from lineqa.datasets.errors import DatasetError, DatasetFormatError
from lineqa.datasets.formats import READERS, WRITERS, detect_format, read_dataset
from lineqa.datasets.model import Annotation, Box, LabelledImage


def _image(path: Path, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))
    return path


def _yolo(root: Path, rows: str, config: str = "train: images/train\nnames: [scratch, dent]\n") -> Path:
    _image(root / "images/train/a.png")
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/train/a.txt").write_text(rows)
    (root / "data.yaml").write_text(config)
    return root


def test_yolo_bad_rows_are_problems_with_file_and_line(tmp_path: Path) -> None:
    rows = "0 0.5 0.5 0.25 0.5\n0 0.5 abc 0.1 0.1\n7 0.5 0.5 0.1 0.1\n1 0.5 0.5\nx 0.5 0.5 0.1 0.1\n"
    dataset = read_dataset(_yolo(tmp_path, rows))
    label = tmp_path / "labels/train/a.txt"
    assert dataset.problems == [
        f"{label}:2: cy is not a number: 'abc'",
        f"{label}:3: unknown class id 7 (data.yaml names ids 0-1)",
        f"{label}:4: expected 5 values 'class cx cy w h', found 3",
        f"{label}:5: class id 'x' is not an integer",
    ]
    (image,) = dataset.images
    assert image.boxes == (Box("scratch", 24.0, 12.0, 40.0, 36.0),)
    assert image.annotation is Annotation.BOXES


def test_a_yolo_image_whose_rows_all_fail_is_missing_not_background(tmp_path: Path) -> None:
    (image,) = read_dataset(_yolo(tmp_path, "9 0.5 0.5 0.1 0.1\n")).images
    assert image.annotation is Annotation.MISSING


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("train: images/train\n", "'names' is missing"),
        ("names: [a]\n", "needs at least one of train, val, test"),
        ("train: images/train\nnames: [a, b]\nnc: 3\n", "'nc' is 3 but 'names' lists 2 classes"),
        ("train: images/train\nnames: {0: a, 2: b}\n", "'names' must map the ids 0, 1, ... n-1"),
        ("train: [images/train\nnames: [a]\n", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_an_unusable_data_yaml_is_one_error(tmp_path: Path, config: str, message: str) -> None:
    with pytest.raises(DatasetFormatError, match=r"data\.yaml") as caught:
        READERS["yolo"](_yolo(tmp_path, "", config))
    assert message in caught.value.reason


def test_a_yolo_split_folder_that_is_absent_or_outside_the_dataset_is_a_problem(tmp_path: Path) -> None:
    config = "train: images/train\nval: images/val\ntest: ../elsewhere\nnames: [scratch]\n"
    dataset = read_dataset(_yolo(tmp_path / "ds", "", config))
    assert len(dataset.images) == 1
    assert dataset.problems == [
        f"{tmp_path / 'ds/data.yaml'}: 'val': 'images/val' not found (looked for {tmp_path / 'ds/images/val'})",
        f"{tmp_path / 'ds/data.yaml'}: 'test': '../elsewhere' is outside the dataset {tmp_path / 'ds'}",
    ]


def test_broken_json_is_one_error_with_its_line(tmp_path: Path) -> None:
    file = tmp_path / "instances_train.json"
    file.write_text('{\n  "images": [],\n  "annotations": [,]\n}')
    for read in (READERS["coco"], READERS["labelstudio"], detect_format):
        with pytest.raises(DatasetFormatError) as caught:
            read(file)
        assert (caught.value.file, caught.value.line) == (str(file), 3)
        assert str(caught.value).startswith(f"{file}:3: not valid JSON: Expecting value")


def test_coco_bad_records_are_problems_naming_the_record(tmp_path: Path) -> None:
    _image(tmp_path / "images/a.png")
    _image(tmp_path / "secret.png")
    document = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "gone.png"},
            {"id": 3, "file_name": "../secret.png"},
            {"file_name": "a.png"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 2, "x", 4]},
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 2]},
        ],
        "categories": [{"id": 1, "name": "scratch"}, {"id": 1, "name": "dent"}],
    }
    file = tmp_path / "ds/annotations.json"
    file.parent.mkdir()
    file.write_text(json.dumps(document))
    (tmp_path / "ds/images").symlink_to(tmp_path / "images")
    dataset = READERS["coco"](file)
    assert [problem.removeprefix(f"{file}: ") for problem in dataset.problems] == [
        "categories[1]: a duplicate 'id'",
        "images[1]: image 'gone.png' not found in the dataset folder " + str(tmp_path / "ds"),
        "images[2]: image '../secret.png' not found in the dataset folder " + str(tmp_path / "ds"),
        "images[3]: needs an 'id' (a number or text)",
        "annotations[1]: unknown 'category_id' 5",
        "annotations[2] bbox w is not a number: 'x'",
        "annotations[3]: 'image_id' 9 names no image of this file",
        "annotations[4]: 'bbox' must be [x, y, width, height], found [1, 2]",
    ]
    (image,) = dataset.images
    assert (image.name, image.boxes, image.declared_size) == ("a.png", (Box("scratch", 1, 2, 4, 6),), (64, 48))


def test_a_voc_object_without_bndbox_is_a_problem(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation><filename>a.jpg</filename><object><name>dent</name></object></annotation>")
    (tmp_path / "b.xml").write_text("<annotation><filename>b.jpg</filename><object>")
    dataset = read_dataset(tmp_path)
    assert dataset.format == "voc"
    assert dataset.problems[0] == f"{xml}: <object> #1 (dent): no <bndbox>"
    assert dataset.problems[1].startswith(f"{tmp_path / 'b.xml'}:1: not well-formed XML: no element found")
    assert [image.annotation for image in dataset.images] == [Annotation.MISSING, Annotation.MISSING]


def test_a_voc_xml_without_its_image_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    dataset = READERS["voc"](tmp_path)
    assert dataset.problems == [f"{tmp_path / 'a.xml'}: no image found for <filename> 'a.jpg' (nor for 'a')"]


def _cvat(root: Path, body: str) -> Path:
    _image(root / "images/a.png")
    meta = "<meta><task><labels><label><name>scratch</name></label></labels></task></meta>"
    file = root / "annotations.xml"
    file.write_text(f"<annotations><version>1.1</version>{meta}{body}</annotations>")
    return file


def test_cvat_shapes_that_are_not_boxes_are_problems_naming_the_element(tmp_path: Path) -> None:
    shapes = (
        '<box label="scratch" xtl="1" ytl="2" xbr="3" ybr="4"/>'
        '<box label="scratch" xtl="abc" ytl="2" xbr="3" ybr="4"/>'
        '<box label="dent" xtl="1" ytl="2" xbr="3" ybr="4"/>'
        '<box label="scratch" xtl="1" ytl="2" xbr="3" ybr="4" rotation="30"/>'
        '<polygon label="scratch" points="1,2;3,4;5,6"/>'
    )
    file = _cvat(tmp_path, f'<image id="0" name="a.png">{shapes}</image><image id="1" name="b.png"/>')
    dataset = read_dataset(tmp_path)
    where = f"{file}: <image> #1 (a.png)"
    assert dataset.problems == [
        f"{where} <box> #2 xtl is not a number: 'abc'",
        f"{where} <box> #3: label 'dent' is not one of the task's labels",
        f"{where} <box> #4: a rotated box is not an axis-aligned box",
        f"{where} <polygon> #5: only boxes are imported",
        f"{file}: <image> #2 (b.png): image not found in {tmp_path / 'images'} nor in {tmp_path}",
    ]
    (image,) = dataset.images
    assert image.boxes == (Box("scratch", 1, 2, 3, 4),)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("<annotations>\n<version>1.1</version>\n<image></annotations>", 3, "not well-formed XML: mismatched tag"),
        ("<annotations><version>2.0</version></annotations>", None, "not CVAT for images 1.1"),
    ],
)
def test_an_unreadable_cvat_file_is_one_error(tmp_path: Path, text: str, line: int | None, reason: str) -> None:
    (tmp_path / "annotations.xml").write_text(text)
    with pytest.raises(DatasetFormatError) as caught:
        READERS["cvat"](tmp_path)
    assert caught.value.line == line
    assert caught.value.reason.startswith(reason)


def test_label_studio_regions_that_are_not_rectangles_are_problems(tmp_path: Path) -> None:
    _image(tmp_path / "a.png", width=200, height=100)
    region = {"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 50, "height": 50}}
    results = [
        region | {"value": region["value"] | {"rectanglelabels": ["dent"]}},  # no original size: read from the file
        {"type": "polygonlabels", "value": {"points": [[1, 2]], "polygonlabels": ["dent"]}},
        region | {"value": region["value"] | {"rectanglelabels": ["dent", "scratch"]}},
    ]
    tasks = [{"id": 7, "data": {"image": "/data/upload/1/a.png"}, "annotations": [{"result": results}]}, {"x": 1}]
    file = tmp_path / "export.json"
    file.write_text(json.dumps(tasks))
    dataset = read_dataset(file)
    assert dataset.problems == [
        f"{file}: task [0] (id 7) result [1]: only 'rectanglelabels' regions are imported, not 'polygonlabels'",
        f"{file}: task [0] (id 7) result [2]: needs a 'value' with exactly one label in 'rectanglelabels'",
        f"{file}: task [1]: not a task (needs 'data')",
    ]
    (image,) = dataset.images
    assert image.boxes == (Box("dent", 20, 20, 120, 70),)


def test_deeppcb_bad_lines_are_problems_with_file_and_line(tmp_path: Path) -> None:
    _image(tmp_path / "group1/1/1000_test.jpg")
    (tmp_path / "group1/1_not").mkdir()
    annotation = tmp_path / "group1/1_not/1000.txt"
    annotation.write_text("1 2 30 40 1\n1,2,30,40,2\n1 2 30 40 7\n1 2 30\n")
    listing = tmp_path / "trainval.txt"
    listing.write_text("group1/1/1000.jpg group1/1_not/1000.txt\ngroup1/1/1001.jpg group1/1_not/1001.txt\nx\n")
    dataset = read_dataset(listing)
    assert dataset.problems == [
        f"{annotation}:3: unknown defect type '7' (DeepPCB's types are 1-6)",
        f"{annotation}:4: expected 5 values 'x1 y1 x2 y2 type', found 3",
        f"{listing}:2: group1/1/1001_test.jpg not found in {tmp_path}",
        f"{listing}:3: expected '<image> <annotation>', found 1 values",
    ]
    (image,) = dataset.images
    assert image.boxes == (Box("open", 1, 2, 30, 40), Box("short", 1, 2, 30, 40))
    assert image.group == "group1"


def test_detect_format_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not a dataset in a known format"):
        detect_format(tmp_path)
    with pytest.raises(DatasetFormatError, match="no such file or folder"):
        detect_format(tmp_path / "absent")
    with pytest.raises(DatasetError, match="unknown dataset format 'kitti'"):
        read_dataset(tmp_path, "kitti")


def _images(tmp_path: Path) -> list[LabelledImage]:
    image = _image(tmp_path / "src/a.png")
    return [LabelledImage("a.png", image, (Box("scratch", 1, 2, 3, 4),), split="train")]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writers_never_overwrite_unless_asked(tmp_path: Path, writer: str) -> None:
    images = _images(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        WRITERS[writer](["scratch"], images, out)
    assert (out / "keep.txt").is_file()
    WRITERS[writer](["scratch"], images, out, overwrite=True)
    assert not (out / "keep.txt").exists()
    with pytest.raises(DatasetError, match="holds the images being exported"):
        WRITERS[writer](["scratch"], images, tmp_path, overwrite=True)
    assert images[0].path.is_file()


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writers_refuse_what_they_would_lose(tmp_path: Path, writer: str) -> None:
    (image,) = _images(tmp_path)
    with pytest.raises(DatasetError, match="box class 'scratch' is not one of"):
        WRITERS[writer](["dent"], [image], tmp_path / "out1")
    with pytest.raises(DatasetError, match="must be a relative path inside the dataset"):
        WRITERS[writer](["scratch"], [LabelledImage("../a.png", image.path)], tmp_path / "out2")
    with pytest.raises(DatasetError, match="two images would be written to"):
        WRITERS[writer](["scratch"], [image, image], tmp_path / "out3")


def test_yolo_holds_only_train_val_and_test(tmp_path: Path) -> None:
    (image,) = _images(tmp_path)
    odd = LabelledImage("a.png", image.path, split="holdout")
    with pytest.raises(DatasetError, match="rename holdout first"):
        WRITERS["yolo"](["scratch"], [odd], tmp_path / "out")
    lineqa = {"groups": ["not", "a", "mapping"]}
    config = {"train": "images/train", "names": ["scratch"], "lineqa": lineqa}
    with pytest.raises(DatasetFormatError, match=r"'lineqa\.groups' must map"):
        read_dataset(_yolo(tmp_path / "ds", "", yaml.safe_dump(config)))


def test_yolo_split_lists_name_images_from_the_root_and_report_absent_ones(tmp_path: Path) -> None:
    _yolo(tmp_path, "", "train: lists/train.txt\nnames: [scratch]\n")
    _image(tmp_path / "images/train/b.png")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists/train.txt").write_text("images/train/a.png\n./../images/train/b.png\n\nimages/gone.png\n")
    dataset = read_dataset(tmp_path)
    assert [(image.name, image.annotation) for image in dataset.images] == [
        ("images/train/a.png", Annotation.BACKGROUND),
        ("images/train/b.png", Annotation.MISSING),
    ]
    assert dataset.problems == [f"{tmp_path / 'lists/train.txt'}:4: image 'images/gone.png' not found in {tmp_path}"]


def test_a_yolo_image_that_cannot_be_sized_is_a_problem(tmp_path: Path) -> None:
    _yolo(tmp_path, "0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "images/train/a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dataset = read_dataset(tmp_path)
    assert dataset.images == []
    assert dataset.problems == [
        f"{tmp_path / 'images/train/a.png'}: unreadable image: truncated PNG: the IHDR chunk "
        "with the image size is missing"
    ]
