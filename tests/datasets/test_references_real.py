"""DeepPCB's templates as references, on the real dataset beside the checkout (../shared; skipped where
absent): every defective board carries its own template, templates can still be imported as good parts (the
two combine), and boards whose templates have the same bytes share one stored image."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.formats.deeppcb import read_deeppcb
from lineqa.datasets.model import Annotation
from lineqa.db import sqlite_url
from tests.datasets.test_cli import lineqa
from tests.datasets.test_references import stored_images

# Three boards of group 20085 whose templates are byte-identical files, among their neighbours.
SHARED_TEMPLATE = ("20085159", "20085167", "20085168")
NEIGHBOURS = range(20085155, 20085171)


def template_of(board: Path) -> Path:
    return board.with_name(board.name.replace("_test.jpg", "_temp.jpg"))


def test_every_deeppcb_board_carries_its_own_template(deeppcb_root: Path) -> None:
    boards = read_deeppcb(deeppcb_root / "trainval.txt").images
    assert len(boards) == 1000
    assert all(board.reference == template_of(board.path) and board.reference.is_file() for board in boards)

    both = read_deeppcb(deeppcb_root / "trainval.txt", templates=True).images
    templates = [image for image in both if image.name.endswith("_temp.jpg")]
    assert (len(both), len(templates)) == (2000, 1000)
    assert all(t.reference is None and t.annotation is Annotation.BACKGROUND and not t.boxes for t in templates)
    assert sum(image.reference is not None for image in both) == 1000

    plain = read_deeppcb(deeppcb_root / "trainval.txt", references=False).images
    assert len(plain) == 1000 and all(board.reference is None for board in plain)


@pytest.fixture
def subset(deeppcb_root: Path, tmp_path: Path) -> Path:
    """A list file of boards of group 20085 (three of them sharing a template's bytes) in a folder that links
    to the real group: the importer reads DeepPCB's own files, only fewer of them."""
    root = tmp_path / "PCBData"
    root.mkdir()
    (root / "group20085").symlink_to(deeppcb_root / "group20085")
    lines = [
        line
        for line in (deeppcb_root / "trainval.txt").read_text().splitlines()
        if line.startswith("group20085/") and int(Path(line.split()[0]).stem) in NEIGHBOURS
    ]
    assert len(lines) == len(NEIGHBOURS)
    (root / "subset.txt").write_text("\n".join(lines) + "\n")
    return root / "subset.txt"


def test_boards_sharing_a_template_store_it_once(subset: Path, tmp_path: Path) -> None:
    imported = read_deeppcb(subset, templates=True)
    files = [path for image in imported.images for path in (image.path, image.reference) if path is not None]
    digest = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    shared = {digest[subset.parent / f"group20085/20085/{board}_temp.jpg"] for board in SHARED_TEMPLATE}
    assert len(shared) == 1  # the premise: three template files, one content

    engine = open_catalog_database(sqlite_url(tmp_path / "c.db"))
    try:
        catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
        report = catalog.import_images("pcb", imported)
        assert (report.added, report.skipped) == (2 * len(NEIGHBOURS), ())
        assert stored_images(catalog) == len(set(digest.values())) == 2 * len(NEIGHBOURS) - 2
        samples = {s.name: s for s in catalog.working_samples("pcb")}
    finally:
        engine.dispose()
    for image in imported.images:
        expected = None if image.reference is None else digest[image.reference]
        assert samples[image.name].reference == expected
    assert {samples[f"group20085/20085/{board}_test.jpg"].reference for board in SHARED_TEMPLATE} == shared
    assert len(list((tmp_path / "images").rglob("*.jpg"))) == 2 * len(NEIGHBOURS) - 2


def test_the_import_command_attaches_templates_unless_told_not_to(subset: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    default = json.loads(lineqa(home, "--json", "import", "acme/refs", str(subset)).stdout)
    both = json.loads(lineqa(home, "--json", "import", "acme/both", str(subset), "--templates").stdout)
    neither = json.loads(lineqa(home, "--json", "import", "acme/none", str(subset), "--no-references").stdout)
    assert (default["added"], both["added"], neither["added"]) == (16, 32, 16)
    for name in ("refs", "both", "none"):
        lineqa(home, "snapshot", f"acme/{name}")
    engine = open_catalog_database(sqlite_url(home / "lineqa.db"))
    try:
        catalog = Catalog(engine, ContentStore(home / "images"), "acme")
        referenced = {name: sum(s.reference is not None for s in catalog.manifest(name).samples) for name in
                      ("refs", "both", "none")}  # fmt: skip
        hashes = {catalog.manifest(name).sha256 for name in ("refs", "both", "none")}
    finally:
        engine.dispose()
    assert referenced == {"refs": 16, "both": 16, "none": 0}
    assert len(hashes) == 3

    help_text = lineqa(home, "import", "--help").stdout
    assert "--no-references" in help_text and "--templates" in help_text
    done = lineqa(home, "import", "acme/x", str(tmp_path / "src"), "--format", "yolo", "--no-references", check=False)
    assert done.returncode == 2 and "--no-references is for DeepPCB sources" in done.stderr
