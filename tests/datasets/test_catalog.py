"""The dataset catalog on SQLite and the loopback PostgreSQL: imports, immutable content-addressed versions,
diffs, tenant isolation, and pooling with consent that can be withdrawn. On PostgreSQL the catalog also runs
logged in as the application role, under row-level security, as the services do; pools are built by the
platform (the owner), who alone reads every tenant's contributions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import pytest
from sqlalchemy import Engine

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.datasets.catalog import Catalog, DatasetNotFoundError, ImportRefusedError
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.manifest import Manifest, diff
from lineqa.datasets.model import Annotation, Box, ImportedDataset, LabelledImage
from lineqa.datasets.pool import build_pool, pool_images, pool_manifest, tenant_pool_manifest
from lineqa.datasets.synth import CLASSES, Surface, generate_part
from lineqa.db import sqlite_url
from tests.conftest import app_role_url


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-application-role"])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """(the engine tenants' work goes through, the platform's engine)."""
    url = sqlite_url(tmp_path / "c.db") if request.param == "sqlite" else request.getfixturevalue("empty_postgres_url")
    platform = open_catalog_database(url)
    tenants = open_catalog_database(app_role_url(url)) if request.param.endswith("role") else platform
    yield tenants, platform
    tenants.dispose()
    platform.dispose()


@pytest.fixture
def engine(engines: tuple[Engine, Engine]) -> Engine:
    return engines[0]


def synthetic(folder: Path, count: int, seed: int = 0, rename: dict[str, str] | None = None) -> ImportedDataset:
    """``count`` synthetic metal parts written as JPEG files, labelled as an importer would give them."""
    folder.mkdir(parents=True, exist_ok=True)
    classes = [(rename or {}).get(c, c) for c in CLASSES[Surface.METAL]]
    images = []
    for i in range(count):
        part = generate_part(Surface.METAL, seed + i)
        path = folder / f"part{i:03d}.jpg"
        cv2.imwrite(str(path), part.image)
        boxes = tuple(Box(classes[c], x1, y1, x2, y2) for c, x1, y1, x2, y2 in part.labels)
        annotation = Annotation.BOXES if boxes else Annotation.BACKGROUND
        images.append(LabelledImage(path.name, path, boxes, annotation, group=f"batch{i // 3}"))
    return ImportedDataset("synthetic", folder, classes, images)


def test_import_is_idempotent_and_sees_label_changes(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    data = synthetic(tmp_path / "src", 6)
    first = catalog.import_images("metal", data)
    assert (first.added, first.updated, first.unchanged, first.skipped) == (6, 0, 0, ())
    assert catalog.import_images("metal", data).unchanged == 6
    moved = replace(data.images[0], boxes=(Box("dent", 1, 2, 30, 40),), annotation=Annotation.BOXES)
    again = catalog.import_images("metal", replace(data, images=[moved, *data.images[1:]]))
    assert (again.added, again.updated, again.unchanged) == (0, 1, 5)
    stored = {s.name: s for s in catalog.working_samples("metal")}
    assert stored["part000.jpg"].boxes == (Box("dent", 1, 2, 30, 40),)
    assert len(list((tmp_path / "images" / "acme").rglob("*.jpg"))) == 6  # each image stored once


def test_a_source_with_problems_imports_nothing_unless_asked(engine: Engine, tmp_path: Path) -> None:
    data = synthetic(tmp_path / "src", 3)
    data.images[1].path.write_bytes(data.images[1].path.read_bytes()[:200])  # truncated JPEG
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    with pytest.raises(ImportRefusedError, match=r"nothing imported: part001\.jpg: ") as refused:
        catalog.import_images("metal", data)
    assert len(refused.value.problems) == 1 and catalog.names() == []
    report = catalog.import_images("metal", data, skip_bad=True)
    assert report.added == 2 and len(report.skipped) == 1 and report.skipped[0].startswith("part001.jpg: ")


def test_versions_are_immutable_content_addressed_and_diffable(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    data = synthetic(tmp_path / "src", 6)
    catalog.import_images("metal", data)
    v1 = catalog.snapshot("metal", "first")
    assert catalog.snapshot("metal").number == 1  # nothing changed: the same version
    manifest = catalog.manifest("metal", "1")
    assert manifest.sha256 == v1.sha256 == Manifest.from_json(manifest.canonical_json()).sha256
    catalog.set_splits("metal", {"part000.jpg": "val"})
    extra = synthetic(tmp_path / "src2", 1, seed=50)
    catalog.import_images("metal", replace(extra, images=[replace(extra.images[0], name="new.jpg")]))
    v2 = catalog.snapshot("metal", "second")
    assert (v2.number, v2.images) == (2, 7) and v2.sha256 != v1.sha256
    assert catalog.manifest("metal", "1").sha256 == v1.sha256  # the old version did not change
    assert catalog.manifest("metal", v2.sha256[:10]).sha256 == v2.sha256
    assert catalog.manifest("metal").sha256 == v2.sha256  # latest
    change = diff(catalog.manifest("metal", "1"), catalog.manifest("metal", "2"))
    assert change.added == ("new.jpg",) and change.moved == (("part000.jpg", None, "val"),)
    assert not change.removed and not change.relabelled
    assert diff(manifest, manifest).unchanged
    with pytest.raises(DatasetNotFoundError):
        catalog.manifest("metal", "9")


def test_revise_makes_a_new_version_and_fixes_the_working_dataset(engine: Engine, tmp_path: Path) -> None:
    catalog = Catalog(engine, ContentStore(tmp_path / "images"), "acme")
    catalog.import_images("metal", synthetic(tmp_path / "src", 3))
    v1 = catalog.snapshot("metal")
    fixed = (Box("dent", 10, 12, 40, 44),)
    v2 = catalog.revise("metal", "1", "part001.jpg", fixed, note="label fix")
    assert v2.number == 2 and v2.note == "label fix" and v2.images == 3
    assert catalog.manifest("metal", "1").sha256 == v1.sha256  # the revised version is unchanged
    after = {s.name: s for s in catalog.manifest("metal", "2").samples}
    assert after["part001.jpg"].boxes == fixed and after["part001.jpg"].annotation is Annotation.BOXES
    assert diff(catalog.manifest("metal", "1"), catalog.manifest("metal", "2")).relabelled == ("part001.jpg",)
    assert catalog.snapshot("metal").number == 2  # the working dataset got the same fix
    background = catalog.revise("metal", "2", "part001.jpg", ())
    assert {s.name: s for s in catalog.manifest("metal", str(background.number)).samples}[
        "part001.jpg"
    ].annotation is Annotation.BACKGROUND
    with pytest.raises(DatasetNotFoundError, match="no sample"):
        catalog.revise("metal", "1", "nope.jpg", fixed)
    with pytest.raises(DatasetError, match="no class 'rust'"):
        catalog.revise("metal", "1", "part001.jpg", (Box("rust", 1, 1, 9, 9),))
    with pytest.raises(DatasetNotFoundError):
        Catalog(engine, ContentStore(tmp_path / "images"), "globex").revise("metal", "1", "part001.jpg", fixed)


def test_a_tenant_cannot_see_another_tenants_datasets_or_images(engine: Engine, tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "images")
    acme, globex = Catalog(engine, store, "acme"), Catalog(engine, store, "globex")
    acme.import_images("metal", synthetic(tmp_path / "src", 3))
    acme.snapshot("metal")
    assert globex.names() == []
    for attempt in (lambda: globex.classes("metal"), lambda: globex.manifest("metal"),
                    lambda: globex.working_samples("metal"), lambda: globex.snapshot("metal")):  # fmt: skip
        with pytest.raises(DatasetNotFoundError, match="tenant 'globex' has no dataset 'metal'"):
            attempt()
    stolen = acme.manifest("metal")
    with pytest.raises(DatasetNotFoundError):
        globex.labelled_images(stolen)
    key = next(iter((tmp_path / "images" / "acme").rglob("*.jpg"))).relative_to(tmp_path / "images")
    with pytest.raises(ContentStoreError):
        store.path("globex", str(key))
    with pytest.raises(ContentStoreError):
        store.path("globex", f"globex/../{key}")
    with pytest.raises(DatasetError):
        globex.contribute("metal", "1", by="mallory")


def test_pooling_maps_classes_records_consent_and_honours_withdrawal(
    engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    engine, platform = engines
    store = ContentStore(tmp_path / "images")
    acme, globex, initech = (Catalog(engine, store, t) for t in ("acme", "globex", "initech"))
    acme.import_images("metal", synthetic(tmp_path / "a", 4, seed=0, rename={"scratch": "scratches"}))
    globex.import_images("brackets", synthetic(tmp_path / "g", 3, seed=100))
    acme.snapshot("metal")
    globex.snapshot("brackets")
    with pytest.raises(DatasetError, match="no tenant has contributed"):
        build_pool(platform, {})
    acme.contribute("metal", "1", by="qa-lead@acme")
    globex.contribute("brackets", "latest", by="ml@globex")

    first = build_pool(platform, {"scratches": "scratch"})
    assert first.number == 1 and first.images == 7
    assert set(first.classes) == {"scratch", "dent", "stain"}
    manifest = pool_manifest(engine, "1")
    assert {(c[0], c[1], c[2]) for c in manifest.provenance["contributions"]} == {
        ("acme", "metal", 1),
        ("globex", "brackets", 1),
    }
    assert all(b.class_name != "scratches" for s in manifest.samples for b in s.boxes)
    files = pool_images(manifest, store)
    assert {f.name.split("/")[0] for f in files} == {"acme", "globex"} and all(f.path.is_file() for f in files)
    assert build_pool(platform, {"scratches": "scratch"}).number == 1  # same content: same pool version
    assert tenant_pool_manifest(engine, "globex", "1").sha256 == manifest.sha256
    with pytest.raises(DatasetNotFoundError):
        tenant_pool_manifest(engine, "initech", "1")  # not a participant: sees nothing

    acme.withdraw("metal", "1")
    second = build_pool(platform, {"scratches": "scratch"})
    assert second.number == 2 and second.images == 3
    assert {s.tenant for s in pool_manifest(engine, "2").samples} == {"globex"}
    assert pool_manifest(engine, "1").sha256 == manifest.sha256  # the built pool is unchanged
    with pytest.raises(DatasetError, match="no consent to withdraw"):
        acme.withdraw("metal", "1")
    assert initech.names() == []


def test_catalog_migrations_make_the_declared_schema(engine: Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lineqa.datasets.schema import metadata

    def catalog_tables(name: str | None, kind: str, _: object) -> bool:
        return kind != "table" or (name or "").startswith("ds_")

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts={"include_name": catalog_tables}), metadata) == []
