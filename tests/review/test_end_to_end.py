"""From the line to a dataset version: real DeepPCB frames through the real gateway (embedded Triton, TLS,
camera token) → the flagged parts in the review queue → reviewed (confirmed, false alarm, corrected) → a new
snapshot of the tenant's working dataset holds them, with the very image bytes the camera sent."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.model import Annotation
from lineqa.db import sqlite_url
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.review.app import ReviewSettings, create_app
from lineqa.review.auth import Role
from lineqa.serving.inspector import InspectorSettings
from lineqa.serving.local_plant import set_recipe
from lineqa.serving.pass_sample import PassSample
from tests.review.conftest import PASSWORD, csrf_of, sign_in
from tests.serving.test_gateway import boards, frame, make_rig, served, stream

pytestmark = pytest.mark.slow
__all__ = ["served"]  # the gateway tests' fixture: one embedded Triton for this module


def test_frames_through_the_gateway_become_a_dataset_version(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repository = served[0]
    home = tmp_path / "home"
    home.mkdir()
    paths = boards(deeppcb_root, 8)
    rig = make_rig(served, home / "lineqa.db")
    results = asyncio.run(stream(rig, [frame(i + 1, p.read_bytes()) for i, p in enumerate(paths)]))
    flagged = [r for r in results if r.verdict in (pb.VERDICT_FAIL, pb.VERDICT_REVIEW)]
    assert len(flagged) >= 3, [pb.Verdict.Name(r.verdict) for r in results]
    sent = {r.record_id: paths[r.frame.sequence - 1].read_bytes() for r in flagged}

    app = create_app(ReviewSettings(database_url=sqlite_url(home / "lineqa.db"), images=home / "images",
                                    models=repository.root, pass_sample_percent=0))  # fmt: skip
    users = app.state.services.users
    for name, role in (("qa", Role.QA), ("labeller", Role.LABELLER)):
        users.add_user(name, PASSWORD)
        users.grant(name, "acme", role)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as qa:
        sign_in(qa, "qa")
        queue = qa.get("/t/acme/queue").text
        assert {r.record_id for r in results if f"/parts/{r.record_id}" in queue} == set(sent)

        confirm, false_alarm, correct = (r.record_id for r in flagged[:3])
        corrected = [{"class": "short", "box": [100, 100, 160, 150]}]
        for record_id, kind, boxes in ((confirm, "confirm", ""), (false_alarm, "false_alarm", ""),
                                       (correct, "correct", json.dumps(corrected))):  # fmt: skip
            page = qa.get(f"/t/acme/parts/{record_id}")
            assert "Traceability record" in page.text and "deeppcb v1" in page.text
            response = qa.post(f"/t/acme/parts/{record_id}/decisions",
                               data={"kind": kind, "boxes": boxes, "csrf_token": csrf_of(page.text)})  # fmt: skip
            assert response.status_code == 303, response.text
        pending = qa.get("/t/acme/queue").text
        assert not any(f"/parts/{r}" in pending for r in (confirm, false_alarm, correct))

    with TestClient(app, base_url="https://testserver", follow_redirects=False) as labeller:
        sign_in(labeller, "labeller")
        token = csrf_of(labeller.get("/t/acme/datasets").text)
        made = labeller.post("/t/acme/datasets/reviewed/snapshot", data={"note": "reviewed parts", "csrf_token": token})
        assert made.status_code == 303 and made.headers["location"].endswith("/datasets/reviewed/v/1")

    catalog = Catalog(app.state.services.engine, ContentStore(home / "images"), "acme")
    manifest = catalog.manifest("reviewed", "1")
    samples = {s.name: s for s in manifest.samples}
    assert set(samples) == {f"parts/{r}.jpg" for r in (confirm, false_alarm, correct)}
    by_record = {r.record_id: r for r in flagged}
    model_boxes = [(d.class_name, round(d.box.x1, 2)) for d in by_record[confirm].defects]
    assert [(b.class_name, round(b.x1, 2)) for b in samples[f"parts/{confirm}.jpg"].boxes] == model_boxes
    assert samples[f"parts/{false_alarm}.jpg"].annotation is Annotation.BACKGROUND
    assert [(b.class_name, b.x1, b.y2) for b in samples[f"parts/{correct}.jpg"].boxes] == [("short", 100, 150)]
    for record_id in (confirm, false_alarm, correct):  # the camera's bytes, stored once, in the version
        assert samples[f"parts/{record_id}.jpg"].sha256 == hashlib.sha256(sent[record_id]).hexdigest()
        assert samples[f"parts/{record_id}.jpg"].group == f"P{by_record[record_id].frame.sequence}"
    app.state.services.engine.dispose()


def test_the_gateway_keeps_the_images_of_the_pass_sample_the_queue_shows(served, deeppcb_root: Path,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:  # fmt: skip
    """Real frames judged PASS by the real gateway (a recipe no detection can fail): the default image policy keeps
    the images of exactly the sampled ones, and the review queue, with the same percentage, lists exactly those
    PASS parts, each with its image."""
    recipe = "id: pcb-pass\nmodel: {name: deeppcb}\ndefaults: {fail_confidence: 1.0}\n"  # nothing reaches 1.0
    home = tmp_path / "home"
    home.mkdir()
    rig = make_rig(served, home / "lineqa.db")
    set_recipe(rig.inspector.store.engine, "acme", "pcb-pass", recipe)
    sample = PassSample(30)
    rig.inspector.settings = InspectorSettings(pass_sample=sample)  # the gateway's defaults, but a 30 % sample
    paths = boards(deeppcb_root, 4)
    frames = [frame(sequence, paths[sequence % 4].read_bytes(), recipe="pcb-pass") for sequence in range(1, 13)]
    results = asyncio.run(stream(rig, frames))
    assert [pb.Verdict.Name(r.verdict) for r in results] == ["VERDICT_PASS"] * 12
    with rig.inspector.store.engine.connect() as conn:
        kept = dict(conn.exec_driver_sql("SELECT sequence, image_key FROM inspections").all())
    sampled = {s for s in range(1, 13) if sample.contains(s)}
    assert 0 < len(sampled) < 12 and {s for s, key in kept.items() if key} == sampled

    app = create_app(ReviewSettings(database_url=sqlite_url(home / "lineqa.db"), images=home / "images",
                                    pass_sample_percent=30))  # fmt: skip
    app.state.services.users.add_user("qa", PASSWORD)
    app.state.services.users.grant("qa", "acme", Role.QA)
    by_sequence = {r.frame.sequence: r.record_id for r in results}
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as qa:
        sign_in(qa, "qa")
        queue = qa.get("/t/acme/queue").text
        assert {s for s, record_id in by_sequence.items() if f"/parts/{record_id}" in queue} == sampled
        for sequence in sampled:
            image = qa.get(f"/t/acme/parts/{by_sequence[sequence]}/image")
            assert image.status_code == 200 and image.content == paths[sequence % 4].read_bytes()
    app.state.services.engine.dispose()
