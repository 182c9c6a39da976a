"""The labeller's view: a dataset version with its validation issues, a sample in the editor, and a fix that
makes a new version (the old one unchanged) with an audit entry."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import cv2

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage
from lineqa.datasets.synth import Surface, generate_part
from lineqa.review import audit
from tests.review.conftest import Site, csrf_of


def import_boards(site: Site, tmp: Path) -> Catalog:
    """Three boards; board1 has a box past the image's right edge and the same box drawn twice."""
    tmp.mkdir()
    images = []
    for i in range(3):
        path = tmp / f"board{i}.jpg"
        cv2.imwrite(str(path), generate_part(Surface.PCB, 40 + i).image)
        boxes = (Box("open", 10, 10, 40, 40),)
        if i == 1:
            boxes = (Box("short", 300, 20, 340, 60), Box("open", 10, 10, 40, 40), Box("open", 10, 10, 40, 40.5))
        images.append(LabelledImage(path.name, path, boxes, Annotation.BOXES))
    catalog = Catalog(site.app.state.services.engine, ContentStore(site.home / "images"), "acme")
    catalog.import_images("boards", ImportedDataset("test", tmp, ["open", "short"], images))
    catalog.snapshot("boards", "imported")
    return catalog


def test_a_label_fix_makes_a_new_version_and_leaves_the_old_one(site: Site, tmp_path: Path) -> None:
    catalog = import_boards(site, tmp_path / "boards")
    labeller = site.client("labeller")
    listing = labeller.get("/t/acme/datasets")
    assert listing.status_code == 200 and "/t/acme/datasets/boards/v/1" in listing.text
    version = labeller.get("/t/acme/datasets/boards/v/1")
    assert "box_outside_image" in version.text and "duplicate_box" in version.text
    sample_url = f"/t/acme/datasets/boards/v/1/sample?sample={quote('board1.jpg')}"
    assert "sample=board1.jpg" in version.text
    page = labeller.get(sample_url)
    data = json.loads(page.text.split('id="editor-data">', 1)[1].split("</script>", 1)[0])
    assert len(data["boxes"]) == 3 and data["classes"] == ["open", "short"]
    assert labeller.get(data["image"]).content[:2] == b"\xff\xd8"

    fixed = json.dumps([{"class": "short", "box": [300, 20, 340, 60]}, {"class": "open", "box": [10, 10, 40, 40]}])
    form = {"sample": "board1.jpg", "boxes": fixed, "reason": "one open drawn twice", "csrf_token": csrf_of(page.text)}
    response = labeller.post("/t/acme/datasets/boards/v/1/sample", data=form)
    assert response.status_code == 303 and "/datasets/boards/v/2/sample" in response.headers["location"]
    old = {s.name: s for s in catalog.manifest("boards", "1").samples}["board1.jpg"]
    new = {s.name: s for s in catalog.manifest("boards", "2").samples}["board1.jpg"]
    assert len(old.boxes) == 3
    assert new.boxes == (Box("short", 300, 20, 320, 60), Box("open", 10, 10, 40, 40))  # clipped to the 320 px image
    fixed_page = labeller.get("/t/acme/datasets/boards/v/2")
    assert "duplicate_box" not in fixed_page.text and "box_outside_image" not in fixed_page.text
    (entry,) = audit.entries(site.app.state.services.engine, "acme", obj="dataset:boards:board1.jpg")
    assert entry.actor == "labeller" and entry.action is audit.AuditAction.LABEL_FIX
    assert (entry.old["version"], len(entry.old["labels"]), entry.new["version"], len(entry.new["labels"])) == (
        1,
        3,
        2,
        2,
    )
    assert entry.reason == "one open drawn twice"


def test_unknown_datasets_versions_and_samples_are_404(site: Site, tmp_path: Path) -> None:
    import_boards(site, tmp_path / "boards")
    labeller = site.client("labeller")
    for url in ("/t/acme/datasets/nope/v/1", "/t/acme/datasets/boards/v/9", "/t/acme/datasets/boards/v/x!",
                "/t/acme/datasets/boards/v/1/sample?sample=nope.jpg",
                "/t/globex/datasets/boards/v/1"):  # fmt: skip
        assert labeller.get(url).status_code == 404, url
    assert site.client("globex-admin").get("/t/globex/datasets/boards/v/1").status_code == 404
