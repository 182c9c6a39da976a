"""Fixtures for the review app: a database with inspection records of two tenants (synthetic PCB parts with
images in the content store, as the gateway writes them), users in every role, and signed-in clients."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.datasets.synth import Surface, generate_part
from lineqa.db import sqlite_url
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.review.app import ReviewSettings, create_app
from lineqa.review.auth import Role, UserStore
from lineqa.review.database import open_review_database
from lineqa.serving.access import AccessStore
from lineqa.serving.database import open_database
from lineqa.serving.local_plant import set_recipe
from lineqa.serving.model_repository import METADATA_NAME, VersionMetadata
from lineqa.serving.records import InspectionRecord, RecordStore
from lineqa.vision.recipe import parse_recipe
from lineqa.vision.yolo_output import HeadKind

PASSWORD = "correct horse battery"
RECIPE = "id: pcb-top\nmodel: {name: pcb}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.3}\n"
RECIPE_VERSION = parse_recipe(RECIPE).version
BASE_TIME = datetime(2026, 3, 2, 7, 0, tzinfo=timezone.utc)  # a Monday, early shift
# verdict, defects (class, confidence, box, disposition), line, camera
PARTS = (
    ("FAIL", [("open", 0.91, (40.0, 50.0, 120.0, 110.0), "defect")], "line-1", "cam-1"),
    ("REVIEW", [("short", 0.41, (150.0, 60.0, 210.0, 130.0), "review")], "line-1", "cam-2"),
    ("FAIL", [("open", 0.88, (20.0, 20.0, 60.0, 70.0), "defect"), ("copper", 0.7, (200.0, 200.0, 260.0, 250.0),
                                                                    "defect")], "line-2", "cam-3"),
    ("PASS", [], "line-1", "cam-1"),
)  # fmt: skip


def part_image(seed: int) -> bytes:
    return bytes(cv2.imencode(".jpg", generate_part(Surface.PCB, seed).image)[1])


Spec = tuple[str, list[tuple[str, float, tuple[float, ...], str]], str, str]  # verdict, defects, line, camera


def record(
    tenant: str, sequence: int, verdict: str, defects: list[tuple[str, float, tuple[float, ...], str]], line: str,
    camera: str, when: datetime, image_key: str | None, image: bytes, record_id: str | None = None,
    part_id: str | None = None, model_version: int = 1, recipe_version: str = RECIPE_VERSION,
) -> InspectionRecord:  # fmt: skip
    """An inspection record as the gateway writes it (its defects JSON, its serialized result), judged by the
    recipe :data:`RECIPE` unless another ``recipe_version`` is named."""
    reasons = [f"{c} {conf:.2f} ≥ threshold" for c, conf, _, d in defects if d == "defect"]
    reasons += [f"{c} {conf:.2f} in the review band" for c, conf, _, d in defects if d == "review"]
    result = pb.InspectionResult(verdict=getattr(pb, f"VERDICT_{verdict}"), reasons=reasons)
    return InspectionRecord(
        record_id=record_id or str(uuid.uuid4()), tenant=tenant, line_id=line, camera_id=camera, sequence=sequence,
        part_id=part_id or f"SN-{sequence:04d}", capture_time=when - timedelta(seconds=1), receive_time=when,
        model_name="pcb", model_version=model_version, recipe_id="pcb-top", recipe_version=recipe_version,
        image_sha256=hashlib.sha256(image).hexdigest(), image_key=image_key, verdict=verdict, error_code="",
        defects_json=json.dumps([{"class": c, "confidence": conf, "box": list(box), "area_px": 1.0, "area_mm2": None,
                                  "disposition": d} for c, conf, box, d in defects]),
        service_version="test", result=result.SerializeToString(),
    )  # fmt: skip


def seed_parts(url: str, images: Path, tenant: str, start: datetime = BASE_TIME,
               parts: tuple[Spec, ...] | list[Spec] = PARTS, first: int = 1) -> list[str]:  # fmt: skip
    """``parts`` of one tenant with sequences from ``first``, an hour apart from ``start``, flagged ones with their
    image kept; their record ids."""
    store = RecordStore(open_database(url))
    content = ContentStore(images)
    ids = []
    for sequence, (verdict, defects, line, camera) in enumerate(parts, start=first):
        data = part_image(sequence + (100 if tenant != "acme" else 0))
        key = content.put(tenant, data, "jpg") if verdict != "PASS" else None
        when = start + timedelta(hours=sequence - first + 1)
        rec = record(tenant, sequence, verdict, list(defects), line, camera, when, key, data)
        store.commit(rec)
        ids.append(rec.record_id)
    store.close()
    return ids


@dataclass
class Site:
    """A review app on its own database: tenant ``acme`` (and ``globex``) with parts and users."""

    url: str
    home: Path
    app: FastAPI
    parts: dict[str, list[str]]
    users: UserStore
    clients: list[TestClient] = field(default_factory=list)

    def client(self, username: str | None = None) -> TestClient:
        """A client over https (session cookies are Secure), signed in as ``username`` when given."""
        client = TestClient(self.app, base_url="https://testserver", follow_redirects=False)
        self.clients.append(client)
        if username:
            sign_in(client, username)
        return client


def login_token(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return csrf_of(page.text.split('action="/login"', 1)[1])  # the login form's, not the sign-out form's


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> None:
    response = client.post("/login", data={"username": username, "password": password, "csrf_token":
                                           login_token(client), "next": "/"})  # fmt: skip
    assert response.status_code == 303, response.text


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


CLASSES = ("open", "short", "mousebite", "spur", "copper", "pin-hole")


def write_model_metadata(models: Path) -> Path:
    """The judging model's entry in a model repository, as far as the review app reads it (its class names);
    the ONNX file itself is not needed for that."""
    folder = models / "pcb" / "1"
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"")
    metadata = VersionMetadata(CLASSES, (320, 320), HeadKind.NMS, (10, 2100))
    (folder / METADATA_NAME).write_text(metadata.to_json())
    return models


# run name: the dataset version it trained on (lineqa.training.runs' run.json); "a" and "g" are evaluated
RUNS = {"a": "acme/reviewed@1", "b": "acme/pcb@2", "g": "globex/pcb@1", "pool-base": "pool@2"}


def write_runs(root: Path) -> Path:
    """Training runs as ``lineqa train`` and ``lineqa evaluate`` leave them (:data:`RUNS`), without weights."""
    picture = bytes(cv2.imencode(".png", generate_part(Surface.PCB, 1).image[:32, :32])[1])
    for name, dataset in RUNS.items():
        folder = root / name
        folder.mkdir(parents=True)
        record = {"run": name, "status": "exported", "created_at": f"2026-11-{10 + len(name):02d}T08:00:00+00:00",
                  "dataset": {"ref": dataset, "classes": list(CLASSES)}, "hyperparameters": {"epochs": 12},
                  "ultralytics_settings": {"datasets_dir": str(folder / "data")}}  # fmt: skip
        (folder / "run.json").write_text(json.dumps(record))
        if name in ("a", "g"):
            (folder / "eval" / "test").mkdir(parents=True)
            (folder / "eval" / "test" / "metrics.json").write_text(json.dumps({"mAP50": 0.79, "images": 30}))
            for png in ("pr_curves.png", "confusion_matrix.png", "operating_curve.png"):
                (folder / "eval" / "test" / png).write_bytes(picture)
            (folder / "export").mkdir()
            (folder / "export" / "parity.json").write_text(json.dumps({"max_abs_diff": 0.0001, "ok": True}))
    return root


def make_site(url: str, home: Path) -> Site:
    parts = {tenant: seed_parts(url, home / "images", tenant) for tenant in ("acme", "globex")}
    engine = open_database(url)
    access = AccessStore(engine)
    for tenant in parts:  # the recipe version that judged the parts: the queue measures doubt against it
        if tenant not in {t for t, _ in access.tenants()}:
            access.add_tenant(tenant)
        set_recipe(engine, tenant, "pcb-top", RECIPE)
    engine.dispose()
    settings = ReviewSettings(database_url=url, images=home / "images", models=write_model_metadata(home / "models"),
                              runs=write_runs(home / "runs"), pass_sample_percent=100)  # fmt: skip
    app = create_app(settings)
    users = app.state.services.users
    for role in Role:
        users.add_user(role.value, PASSWORD)
        users.grant(role.value, "acme", role)
    users.add_user("globex-admin", PASSWORD)
    users.grant("globex-admin", "globex", Role.ADMIN)
    return Site(url, home, app, parts, users)


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    """A fresh site per test, on SQLite and on the loopback PostgreSQL."""
    url = sqlite_url(tmp_path / "lineqa.db") if request.param == "sqlite" else request.getfixturevalue(
        "empty_postgres_url")  # fmt: skip
    made = make_site(url, tmp_path)
    yield made
    for client in made.clients:
        client.close()
    made.app.state.services.engine.dispose()


@contextlib.contextmanager
def site_on(database: str, home: Path) -> Iterator[tuple[Site, Engine]]:
    """A review site on ``database`` ("sqlite", or "postgresql-application-role": a fresh PostgreSQL database the
    app reaches as the application role) and the owner's engine, which migrated it; closed afterwards."""
    from tests.conftest import _fresh_postgres_database, app_role_url

    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            owner_url = app_url = sqlite_url(home / "lineqa.db")
        else:
            owner_url = stack.enter_context(_fresh_postgres_database())
            app_url = app_role_url(owner_url)
        platform = open_review_database(owner_url)  # migrates as the owner
        site = make_site(app_url, home)
        yield site, platform
        for client in site.clients:
            client.close()
        site.app.state.services.engine.dispose()
        platform.dispose()
