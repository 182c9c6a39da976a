"""References in the catalog: a sample's golden sample is stored once however many samples share it, travels
in the version's manifest (and so in its hash and diffs, and into pools), and a manifest without references
hashes exactly as it did before references existed. On SQLite and PostgreSQL, as the catalog's own tests."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import Engine, func, select

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog, ImportRefusedError
from lineqa.datasets.manifest import Manifest, ManifestSample, diff
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage
from lineqa.datasets.pool import build_pool, pool_images, pool_manifest
from lineqa.datasets.schema import images
from tests.datasets.test_catalog import engine, engines

__all__ = ["engine", "engines"]  # the fixtures, shared with the catalog's tests

# The hash the manifest code gave this manifest before samples could carry references (commit 2342269).
HASH_BEFORE_REFERENCES = "446033c863959e6ddb87051815ad22705a4e8a51be3d10d4d22b2250058ff8fe"


def golden(seed: int) -> np.ndarray:
    """A defect-free board: a random pattern of copper tracks, the same for the same seed."""
    rng = np.random.default_rng(seed)
    board = np.zeros((96, 128, 3), np.uint8)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, 96, 2))
        cv2.line(board, (x, y), (x + 30, y + int(rng.integers(-10, 10))), (255, 255, 255), 3)
    return board


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def boards(folder: Path) -> ImportedDataset:
    """Four boards: a and b compare with golden 1 (two byte-identical copies of it, as two tools might save),
    c with golden 2, d with none. Each defective board is its golden sample with a blob drawn on it."""
    refs = {
        "a": write(folder / "golden/one.png", golden(1)),
        "b": write(folder / "golden/one-copy.png", golden(1)),
        "c": write(folder / "golden/two.png", golden(2)),
        "d": None,
    }
    samples = []
    for index, (name, reference) in enumerate(refs.items()):
        frame = golden(1 if name in "ab" else 2)
        cv2.circle(frame, (20 + 20 * index, 40), 5, (255, 255, 255), -1)
        path = write(folder / f"{name}.png", frame)
        box = Box("short", 14 + 20 * index, 34, 26 + 20 * index, 46)
        samples.append(LabelledImage(path.name, path, (box,), group="g", reference=reference))
    return ImportedDataset("synthetic", folder, ["short"], samples)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored_images(catalog: Catalog) -> int:
    with catalog.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(images).where(images.c.tenant_id == "acme")).scalar())


def test_samples_sharing_a_reference_store_it_once(engines: tuple[Engine, Engine], tmp_path: Path) -> None:
    engine, platform = engines
    store = ContentStore(tmp_path / "images")
    catalog = Catalog(engine, store, "acme")
    data = boards(tmp_path / "src")
    report = catalog.import_images("pcb", data)
    assert (report.added, report.skipped) == (4, ())
    working = {s.name: s for s in catalog.working_samples("pcb")}
    one, two = sha256(tmp_path / "src/golden/one.png"), sha256(tmp_path / "src/golden/two.png")
    assert [working[f"{n}.png"].reference for n in "abcd"] == [one, one, two, None]
    assert stored_images(catalog) == 6  # four boards, two references: the copy of golden 1 is the same image
    assert len([p for p in (tmp_path / "images").rglob("*.png")]) == 6

    version = catalog.snapshot("pcb")
    exported = {i.name: i for i in catalog.labelled_images(catalog.manifest("pcb", str(version.number)))}
    assert exported["a.png"].reference == exported["b.png"].reference
    assert exported["a.png"].reference is not None and sha256(exported["a.png"].reference) == one
    assert exported["d.png"].reference is None

    catalog.contribute("pcb", str(version.number), by="qa@acme")
    build_pool(platform, {})
    pooled = {i.name: i for i in pool_images(pool_manifest(platform), store)}
    assert pooled["acme/c.png"].reference is not None and sha256(pooled["acme/c.png"].reference) == two


def test_a_reference_is_part_of_the_version_and_its_hash(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    data = boards(tmp_path / "src")
    without = replace(data, images=[replace(i, reference=None) for i in data.images])
    catalog.import_images("pcb", without)
    v1 = catalog.snapshot("pcb")
    report = catalog.import_images("pcb", data)
    assert (report.updated, report.unchanged) == (3, 1)  # a reference added is a change of the sample
    v2 = catalog.snapshot("pcb")
    assert v2.number == 2 and v2.sha256 != v1.sha256
    assert catalog.manifest("pcb", "1").sha256 == v1.sha256  # the version before references is untouched
    change = diff(catalog.manifest("pcb", "1"), catalog.manifest("pcb", "2"))
    assert change.reference_changed == ("a.png", "b.png", "c.png")
    assert not (change.relabelled or change.image_changed or change.added)
    assert catalog.import_images("pcb", data).unchanged == 4

    swapped = [replace(i, reference=tmp_path / "src/golden/two.png") if i.name == "a.png" else i for i in data.images]
    catalog.import_images("pcb", replace(data, images=swapped))
    v3 = catalog.snapshot("pcb")
    assert v3.sha256 not in (v1.sha256, v2.sha256)
    assert diff(catalog.manifest("pcb", "2"), catalog.manifest("pcb", "3")).reference_changed == ("a.png",)


def test_an_unreadable_reference_refuses_the_import_naming_the_sample(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    data = boards(tmp_path / "src")
    (tmp_path / "src/golden/two.png").write_bytes(b"not a png")
    with pytest.raises(ImportRefusedError, match=r"c\.png: its reference .*two\.png"):
        catalog.import_images("pcb", data)
    assert catalog.names() == []
    report = catalog.import_images("pcb", data, skip_bad=True)
    assert report.added == 3 and len(report.skipped) == 1 and report.skipped[0].startswith("c.png")


def manifest_of(samples: list[ManifestSample]) -> Manifest:
    return Manifest(("open", "short"), tuple(samples))


def test_manifests_without_references_keep_their_hash() -> None:
    board = ManifestSample(
        "board-a.jpg", "a" * 64, "jpg", 640, 480, Annotation.BOXES, (Box("open", 10.0, 20.0, 30.5, 40.25),),
        "g1", "train", "acme",
    )  # fmt: skip
    background = ManifestSample("board-b.jpg", "b" * 64, "png", 640, 480, Annotation.BACKGROUND, (), None, None, "acme")
    before = manifest_of([board, background])
    assert before.sha256 == HASH_BEFORE_REFERENCES
    assert "reference" not in before.canonical_json()

    referenced = manifest_of([replace(board, reference="c" * 64, reference_ext="jpg"), background])
    assert referenced.sha256 != before.sha256
    again = Manifest.from_json(referenced.canonical_json())
    assert again.sha256 == referenced.sha256
    assert (again.samples[0].reference, again.samples[0].reference_key()) == ("c" * 64, f"acme/cc/{'c' * 64}.jpg")
    other = manifest_of([replace(board, reference="d" * 64, reference_ext="jpg"), background])
    assert other.sha256 not in (before.sha256, referenced.sha256)
