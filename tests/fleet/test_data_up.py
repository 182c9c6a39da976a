"""Data up, between two homes over mutual TLS on loopback: a plant's flagged parts, their images and its QA
decisions (made with the review app's own code) land in the tenant's dataset on the hub, as far as the tenant's
data policy allows, incrementally; a batch sent again changes nothing; a transfer cut in the middle resumes
without sending an image twice; the hub enforces the policy whatever a plant sends. Synthetic part images."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import grpc
import pytest
from sqlalchemy import Engine, delete, func, select

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.model import Annotation, Box
from lineqa.datasets.synth import Surface, generate_part
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.errors import HubUnreachableError
from lineqa.fleet.policy import DataPolicy
from lineqa.fleet.schema import decisions, parts, plant_cursors, plant_sent
from lineqa.fleet.wire import PartUp, part_to_wire
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.review.decisions import DecisionKind, Decisions
from lineqa.review.queue import ReviewQueue
from lineqa.review.uncertainty import recipe_versions
from lineqa.serving.database import database_url
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.recipes import RecipeStore
from lineqa.serving.records import InspectionRecord, RecordStore
from lineqa.serving.schema import inspections
from tests.helpers.fleet import FAST_LINK, HubHome, hub_running, make_hub, make_plant, plant_sync, retried
from tests.helpers.tcp_proxy import TcpProxy

MODEL_BOX = {"class": "scratch", "confidence": 0.7, "box": [20.0, 30.0, 80.0, 90.0], "disposition": "defect"}
DECISIONS_NOT_PASS_IMAGES = DataPolicy(flagged_parts=True, image_verdicts=frozenset({"FAIL", "REVIEW"}), decisions=True)


@dataclass
class Plant:
    home: Path
    engine: Engine
    store: ContentStore

    def part(self, sequence: int, verdict: str, *, image: bool = True) -> str:
        """A part as the gateway records it (its image kept, or not); its record id."""
        png = cv2.imencode(".png", generate_part(Surface.METAL, sequence).image)[1].tobytes()
        record = InspectionRecord(
            record_id=str(uuid.uuid4()), tenant="acme", line_id="line-1", camera_id="cam-1", sequence=sequence,
            part_id=f"SN{sequence}", capture_time=datetime.now(timezone.utc), receive_time=datetime.now(timezone.utc),
            model_name="acme.metal", model_version=1, recipe_id="bracket", recipe_version="ab" * 32,
            image_sha256=hashlib.sha256(png).hexdigest(),
            image_key=self.store.put("acme", png, "png") if image else None,
            verdict=verdict, error_code="", defects_json=json.dumps([MODEL_BOX] if verdict != "PASS" else []),
            service_version="test", result=b"",
        )  # fmt: skip
        return RecordStore(self.engine).commit(record)[0].record_id

    def decide(self, record_id: str, kind: DecisionKind, boxes: tuple[Box, ...] | None = None) -> None:
        """A QA decision through the review app's own code."""
        queue = ReviewQueue(self.engine, PassSample(100), recipe_versions(RecipeStore(self.engine)))
        Decisions(self.engine, self.store, queue, "reviewed").decide("acme", record_id, kind, boxes, "checked", "qa")


@pytest.fixture(params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> HubHome:
    """A hub on SQLite, and on PostgreSQL with ``hub serve`` as the application role (row-level security)."""
    db_url = str(request.getfixturevalue("empty_postgres_url")) if request.param == "postgresql" else None
    return make_hub(tmp_path, db_url=db_url)


@pytest.fixture
def plant(tmp_path: Path) -> Plant:
    home = tmp_path / "plant"
    engine = open_fleet_database(database_url(home))
    yield Plant(home, engine, ContentStore(home / "images"))
    engine.dispose()


class Recording:
    """The plant's real stub, noting what each PushParts carried (what left the plant), and letting something
    happen on the hub right after one was answered."""

    def __init__(self, stub: pb_grpc.HubServiceStub) -> None:
        self.stub = stub
        self.pushed: list[pb.PushPartsRequest] = []
        self.after_push: Callable[[], object] | None = None  # something that happens on the hub meanwhile

    def PushParts(self, request: pb.PushPartsRequest, **options: object) -> pb.PushPartsResponse:  # noqa: N802
        self.pushed.append(request)
        answer = self.stub.PushParts(request, **options)
        if self.after_push is not None:
            self.after_push()
        return answer

    def __getattr__(self, name: str) -> object:
        return getattr(self.stub, name)


def on_hub(hub: HubHome, table: object) -> int:
    with hub.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def hub_images(hub: HubHome) -> set[str]:
    return {p.stem for p in (hub.home / "images").rglob("*.png")}


def test_flagged_parts_images_and_decisions_land_in_the_tenants_dataset(hub: HubHome, plant: Plant) -> None:
    hub.policy("acme", DECISIONS_NOT_PASS_IMAGES)
    ids = {name: plant.part(n, verdict, image=name != "F4") for n, (name, verdict) in enumerate(
        [("F1", "FAIL"), ("F2", "FAIL"), ("F3", "FAIL"), ("F4", "FAIL"), ("R1", "REVIEW"), ("R2", "REVIEW"),
         ("P1", "PASS"), ("P2", "PASS")], start=1)}  # fmt: skip
    plant.decide(ids["F1"], DecisionKind.CONFIRM)
    plant.decide(ids["R1"], DecisionKind.FALSE_ALARM)
    plant.decide(ids["F2"], DecisionKind.CORRECT, (Box("dent", 10, 12, 50, 60.5),))
    plant.decide(ids["P1"], DecisionKind.CONFIRM)  # a sampled PASS part, confirmed good
    with hub_running(hub) as running:
        make_plant(hub, plant.home, "press-shop", "acme", running.address)
        sync = plant_sync(plant.home)
        offered = Recording(sync.uploads.stub)
        sync.uploads.stub = offered  # type: ignore[assignment]
        try:
            first = sync.uploads.drain()
            catalog = Catalog(hub.engine, ContentStore(hub.home / "images"), "acme")
            before = catalog.snapshot("plant-parts")
            with plant.engine.begin() as conn:  # the plant forgets what it sent: everything goes again
                conn.execute(delete(plant_sent))
                conn.execute(delete(plant_cursors))
            again = sync.uploads.drain()
            after = catalog.snapshot("plant-parts")
            plant.decide(ids["F3"], DecisionKind.CONFIRM)
            new_id = plant.part(9, "REVIEW")
            later = sync.uploads.drain()
        finally:
            sync.close()
    sent_up = [p for request in offered.pushed for p in request.parts]
    assert ids["P2"] not in {p.record_id for p in sent_up}  # it never left the plant: PASS, undecided
    assert not [p for p in sent_up if p.verdict == "PASS" and p.image_ext]  # nor did a PASS image's offer
    assert (first.new_parts, first.new_decisions, first.images, first.known, first.refused) == (7, 4, 5, 0, 0)
    assert (again.new_parts, again.new_decisions, again.images, again.known) == (0, 0, 0, 11)  # nothing changed
    assert after.number == before.number and after.sha256 == before.sha256
    assert (later.new_parts, later.new_decisions, later.images, later.known) == (1, 1, 1, 0)  # only what is new
    with hub.engine.connect() as conn:
        sent = set(conn.execute(select(parts.c.record_id)).scalars())
        assert conn.execute(select(func.count()).select_from(decisions)).scalar_one() == 5
    assert sent == {ids[n] for n in ("F1", "F2", "F3", "F4", "R1", "R2", "P1")} | {new_id}  # P2: PASS, undecided
    samples = {s.name.split("/")[1].split(".")[0]: s for s in catalog.working_samples("plant-parts")}
    assert set(samples) == {ids[n] for n in ("F1", "F2", "F3", "R1", "R2")} | {new_id}  # images: FAIL, REVIEW
    assert samples[ids["F1"]].boxes == (Box("scratch", 20, 30, 80, 90),)  # confirmed: the model's boxes
    assert samples[ids["F2"]].boxes == (Box("dent", 10, 12, 50, 60.5),)  # corrected by QA
    assert samples[ids["R1"]].annotation is Annotation.BACKGROUND  # a false alarm: a hard negative
    assert samples[ids["F3"]].annotation is Annotation.BOXES  # its decision came later
    assert samples[ids["R2"]].annotation is Annotation.MISSING  # not reviewed: the model's boxes are no labels
    assert all(name.startswith("press-shop/") for name in (s.name for s in samples.values()))
    stored = hub_images(hub)
    with plant.engine.connect() as conn:
        pass_sha = conn.execute(select(inspections.c.image_sha256).where(inspections.c.record_id == ids["P1"])).scalar()
    assert len(stored) == 6 and pass_sha not in stored  # the plant kept the PASS part's image; it stayed there


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)
def test_nothing_goes_up_until_the_tenant_sets_a_policy(hub: HubHome, plant: Plant) -> None:
    plant.part(1, "FAIL")
    with hub_running(hub) as running:
        make_plant(hub, plant.home, "press-shop", "acme", running.address)
        sync = plant_sync(plant.home)
        try:
            report = sync.uploads.drain()
        finally:
            sync.close()
    assert report.policy == "no policy: nothing is sent up" and report.new_parts == 0
    assert on_hub(hub, parts) == 0 and not hub_images(hub)


def test_an_upload_cut_in_the_middle_resumes_without_duplicates(hub: HubHome, plant: Plant) -> None:
    hub.policy("acme", DECISIONS_NOT_PASS_IMAGES)
    count = 30
    for n in range(count):
        plant.part(n + 1, "FAIL")
    image_bytes = sum(p.stat().st_size for p in (plant.home / "images").rglob("*.png"))
    with hub_running(hub) as running, TcpProxy(("127.0.0.1", running.port)) as proxy:
        make_plant(hub, plant.home, "press-shop", "acme", f"localhost:{proxy.port}")
        sync = plant_sync(plant.home)
        try:
            proxy.cut_after(int(image_bytes * 0.4))
            with pytest.raises(HubUnreachableError):
                sync.uploads.drain()
            arrived = len(hub_images(hub))
            resumed = retried(sync.uploads.drain)
            again = sync.uploads.drain()
        finally:
            sync.close()
    assert 0 < arrived < count, "the cut came before or after the images"
    assert resumed.known == count and resumed.new_parts == 0  # the batch went again; the hub had every part
    assert resumed.images == count - arrived  # and asked only for the images it lacked
    assert (again.new_parts, again.known, again.images) == (0, 0, 0)
    assert on_hub(hub, parts) == count and len(hub_images(hub)) == count
    catalog = Catalog(hub.engine, ContentStore(hub.home / "images"), "acme")
    assert len(catalog.working_samples("plant-parts")) == count


def test_the_hub_enforces_the_policy_and_the_plants_tenant_whatever_a_plant_sends(
    hub: HubHome, plant: Plant, tmp_path: Path
) -> None:
    hub.policy("acme", DECISIONS_NOT_PASS_IMAGES)
    hub.policy("globex", DataPolicy(flagged_parts=True, image_verdicts=frozenset({"FAIL"})))
    png = cv2.imencode(".png", generate_part(Surface.METAL, 7).image)[1].tobytes()
    sha = hashlib.sha256(png).hexdigest()
    now = datetime.now(timezone.utc)

    def part(verdict: str) -> pb.Part:
        up = PartUp(record_id=str(uuid.uuid4()), verdict=verdict, line_id="line-1", camera_id="cam-1", part_id="",
                    sequence=1, receive_time=now, capture_time=None, recipe_id="r", recipe_version="ab" * 32,
                    model_name="m", model_version=1, defects_json="[]", image_sha256=sha, image_ext="png")  # fmt: skip
        return part_to_wire(up)

    with hub_running(hub) as running:
        acme = make_plant(hub, plant.home, "press-shop", "acme", running.address)
        globex = make_plant(hub, tmp_path / "globex-plant", "hinge-works", "globex", running.address)
        with acme.channel(FAST_LINK) as channel:
            stub = pb_grpc.HubServiceStub(channel)
            answer = stub.PushParts(pb.PushPartsRequest(parts=[part("PASS")]), timeout=10)
            assert answer.new_parts == 0 and "data policy does not allow" in answer.refused[0].reason
            with pytest.raises(grpc.RpcError) as unasked:  # an image no allowed part offers
                stub.PutImage(pb.PutImageRequest(sha256=sha, ext="png", data=png), timeout=10)
            assert unasked.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            flagged = part("FAIL")
            assert list(stub.PushParts(pb.PushPartsRequest(parts=[flagged]), timeout=10).wanted_images) == [sha]
            with pytest.raises(grpc.RpcError) as forged:  # bytes that are not the hash they claim
                stub.PutImage(pb.PutImageRequest(sha256=sha, ext="png", data=png + b"x"), timeout=10)
            assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert stub.PutImage(pb.PutImageRequest(sha256=sha, ext="png", data=png), timeout=10).samples == 1
            rewritten = pb.Part()
            rewritten.CopyFrom(flagged)
            rewritten.verdict = "REVIEW"  # a record is never changed: the same id with other content is refused
            answer = stub.PushParts(pb.PushPartsRequest(parts=[flagged, rewritten]), timeout=10)
            assert answer.known == 1 and "differs from the part received before" in answer.refused[0].reason
            oversized = pb.Part()
            oversized.CopyFrom(part("FAIL"))
            oversized.part_id = "x" * 300  # refused on its own (on PostgreSQL it would fail the whole batch)
            answer = stub.PushParts(pb.PushPartsRequest(parts=[oversized, part("REVIEW")]), timeout=10)
            assert answer.new_parts == 1 and answer.refused[0].reason == "part_id is longer than 256 characters"
        with globex.channel(FAST_LINK) as channel:  # the same part pushed by globex's plant lands in globex
            stub = pb_grpc.HubServiceStub(channel)
            answer = stub.PushParts(pb.PushPartsRequest(parts=[flagged]), timeout=10)
            assert answer.new_parts == 1 and list(answer.wanted_images) == [sha]  # globex has no copy of acme's
    with hub.engine.connect() as conn:
        rows = conn.execute(select(parts.c.tenant_id, parts.c.plant_id)).all()
    assert sorted(rows) == [("acme", "press-shop"), ("acme", "press-shop"), ("globex", "hinge-works")]
    assert Catalog(hub.engine, ContentStore(hub.home / "images"), "globex").names() == []


@pytest.mark.parametrize("hub", ["sqlite"], indirect=True)
def test_an_image_the_hub_refuses_for_good_does_not_hold_up_the_parts_after_it(hub: HubHome, plant: Plant) -> None:
    hub.policy("acme", DECISIONS_NOT_PASS_IMAGES)
    first = plant.part(1, "FAIL")
    with hub_running(hub) as running:
        make_plant(hub, plant.home, "press-shop", "acme", running.address)
        sync = plant_sync(plant.home)
        narrowed = Recording(sync.uploads.stub)
        narrowed.after_push = lambda: hub.policy("acme", DataPolicy(flagged_parts=True))  # images no longer allowed
        sync.uploads.stub = narrowed  # type: ignore[assignment]
        try:
            refused = sync.uploads.drain()
            narrowed.after_push = None
            second = plant.part(2, "FAIL")
            after = sync.uploads.drain()
        finally:
            sync.close()
    assert (refused.new_parts, refused.images) == (1, 0)  # the image was refused; the part is on the hub
    assert (after.new_parts, after.known, after.images) == (1, 0, 0)  # and the next part was not held up by it
    with hub.engine.connect() as conn:
        assert set(conn.execute(select(parts.c.record_id)).scalars()) == {first, second}
    assert not hub_images(hub)
