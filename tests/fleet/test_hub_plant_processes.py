"""The whole shape on one machine: two homes, a hub process (``lineqa hub serve``), a plant process (``lineqa plant
sync``) and the plant's gateway (``lineqa serve`` with its embedded Triton), set up with the commands an operator
types. Cameras stream frames to the gateway throughout: a promotion on the hub reaches the running gateway with
no failed frame; with the hub stopped the line goes on judging with the version it has; with the hub back, a
rollback reaches it too; the flagged parts reach the hub's dataset. Synthetic part images."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import grpc
import pytest
from sqlalchemy import func, select

from lineqa.datasets.synth import Surface, generate_part
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.schema import parts
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.database import database_url
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.promotions import event
from lineqa.serving.schema import inspections
from tests.helpers.fleet import MODEL
from tests.helpers.line import serving
from tests.helpers.processes import stop

pytestmark = pytest.mark.slow
CAMERAS = ("cam-1", "cam-2")
SWITCH_BUDGET_S = 30.0
RECIPE = "id: bracket\nmodel: {name: acme.metal}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.05}\n"


def lineqa(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "lineqa.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def started(args: list[str], log: Path) -> subprocess.Popen[str]:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "lineqa.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip


def wait_for(what: str, check: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.2)


class Cameras:
    """Frames streamed to the plant's gateway from a thread, from start until stop; every result kept."""

    def __init__(self, plant: LocalPlant, port: int) -> None:
        self.results: list[pb.InspectionResult] = []
        self._done = threading.Event()
        images = [cv2.imencode(".png", generate_part(Surface.METAL, seed).image)[1].tobytes() for seed in range(8)]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._stream(plant, port, images)), daemon=True)
        self._thread.start()

    async def _stream(self, plant: LocalPlant, port: int, images: list[bytes]) -> None:
        async def camera(name: str) -> None:
            async def frames() -> AsyncIterator[pb.StreamInspectRequest]:
                sequence = 0
                while not self._done.is_set():
                    sequence += 1
                    identity = pb.FrameIdentity(camera_id=name, line_id="line-1", sequence=sequence,
                                                part_id=f"{name}-{sequence}")  # fmt: skip
                    image = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=images[sequence % len(images)])
                    yield pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id="bracket", image=image))
                    await asyncio.sleep(0.05)

            async with grpc.aio.secure_channel(f"localhost:{port}", plant.channel_credentials()) as channel:
                stub = pb_grpc.InspectionServiceStub(channel)
                call = stub.StreamInspect(frames(), metadata=plant.call_metadata(name))
                async for response in call:
                    self.results.append(response.result)

        await asyncio.gather(*(camera(name) for name in CAMERAS))

    def judged_by(self, version: int, since: int) -> bool:
        """Whether the frames judged after result ``since`` end on ``version`` (the last few of them all)."""
        latest = [r.model.version for r in self.results[since:][-2 * len(CAMERAS) :] if r.verdict != pb.VERDICT_ERROR]
        return len(self.results) - since >= 2 * len(CAMERAS) and set(latest) == {version}

    def stop(self) -> list[pb.InspectionResult]:
        self._done.set()
        self._thread.join(30)
        return self.results


def test_a_hub_promotion_reaches_the_running_plant_gateway_and_the_line_outlives_the_hub(tmp_path: Path) -> None:
    hub, home, logs = tmp_path / "hub", tmp_path / "plant", tmp_path
    hub_port = free_port()
    lineqa("admin", "--home", str(hub), "pki", "init", "--host", "localhost", "--host", "127.0.0.1")
    lineqa("admin", "--home", str(hub), "tenant", "add", "acme")
    lineqa("models", "--repo", str(hub / "models"), "add", "acme.metal", str(MODEL))
    (tmp_path / "bracket.yaml").write_text(RECIPE)
    lineqa("recipes", "--home", str(hub), "set", "acme/bracket", str(tmp_path / "bracket.yaml"), "--reason", "first")
    lineqa("hub", "--home", str(hub), "policy", "set", "acme", "--flagged-parts", "--decisions", "--images",
           "FAIL,REVIEW", "--reason", "defect data for the next model")  # fmt: skip
    enrolment = tmp_path / "press-shop.enrolment"
    lineqa("hub", "--home", str(hub), "plant", "add", "press-shop", "--tenant", "acme", "--hub",
           f"localhost:{hub_port}", "--out", str(enrolment))  # fmt: skip
    plant = provision_local_plant(home, tenant="acme", cameras=CAMERAS)  # the plant's own CA, cameras, tokens
    lineqa("plant", "--home", str(home), "join", str(enrolment))
    hub_args = ["hub", "--home", str(hub), "serve", "--port", str(hub_port), "--max-wait-s", "10"]
    sync_args = ["plant", "--home", str(home), "sync", "--wait-s", "10", "--upload-period-s", "1", "--retry-max-s",
                 "1", "--keepalive-s", "1", "--keepalive-timeout-s", "1"]  # fmt: skip
    hub_process = started(hub_args, logs / "hub.log")
    wait_for("the hub", lambda: "lineqa hub listening" in (logs / "hub.log").read_text())
    sync = started(sync_args, logs / "sync.log")
    gateway = cameras = None
    repository, hub_repository = ModelRepository(home / "models"), ModelRepository(hub / "models")
    switches: dict[str, float] = {}
    try:
        wait_for("the first bundle on the plant", lambda: "bundle #1 installed" in (logs / "sync.log").read_text())
        gateway, port = serving(plant)
        cameras = Cameras(plant, port)
        wait_for("frames judged by v1", lambda: cameras.judged_by(1, 0), 60)

        hub_repository.add_version("acme.metal", MODEL)  # what 'lineqa models publish' and 'promote' write:
        log = hub_repository.promotions("acme.metal")
        log.append(event("adopt", 1, by="ml-lead", reason="on the line before"))
        log.append(event("promote", 2, by="ml-lead", reason="better on scratches"))
        asked, mark = time.monotonic(), len(cameras.results)
        wait_for("v2 on the plant's line", lambda: cameras.judged_by(2, mark), SWITCH_BUDGET_S)
        switches["promote"] = time.monotonic() - asked

        stop(hub_process)  # the hub goes away: the plant keeps judging with what it has
        mark = len(cameras.results)
        time.sleep(4)
        while_down = cameras.results[mark:]
        wait_for("the sync noticing", lambda: "the hub did not answer" in (logs / "sync.log").read_text(), 30)

        hub_process = started(hub_args, logs / "hub.log")
        log.append(event("rollback", 1, by="qa-lead", reason="escapes on line 3"))
        asked, mark = time.monotonic(), len(cameras.results)
        wait_for("the rollback on the plant's line", lambda: cameras.judged_by(1, mark), 60)
        switches["rollback after the hub came back"] = time.monotonic() - asked
        results = cameras.stop()
        cameras = None
        engine = open_fleet_database(database_url(home))
        try:
            with engine.connect() as conn:
                flagged = conn.execute(select(func.count()).select_from(inspections)
                                       .where(inspections.c.verdict.in_(["FAIL", "REVIEW"]))).scalar_one()  # fmt: skip
        finally:
            engine.dispose()
        hub_engine = open_fleet_database(database_url(hub))

        def hub_parts() -> int:
            with hub_engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(parts)).scalar_one())

        try:
            wait_for("the flagged parts on the hub", lambda: hub_parts() == flagged, 60)
        finally:
            hub_engine.dispose()
        status = json.loads(lineqa("plant", "--home", str(home), "status", "--json"))
    finally:
        if cameras is not None:
            cameras.stop()
        for process in (gateway, sync, hub_process):
            if process is not None:
                stop(process)
    errors = [r for r in results if r.verdict == pb.VERDICT_ERROR]
    print(f"\n{len(results)} frames; switch times {({k: round(v, 1) for k, v in switches.items()})}; "
          f"{len(while_down)} judged while the hub was down; {flagged} flagged parts sent up")  # fmt: skip
    assert not errors, f"{len(errors)} ERROR results, e.g. {errors[0].error.message!r}"
    assert while_down and {r.model.version for r in while_down} == {2}
    assert {r.model.version for r in results} == {1, 2} and flagged > 0
    assert [e.action for e in repository.promotions("acme.metal").events()] == ["promote"] * 3
    assert status["bundle"] == 3 and status["models"] == {"acme.metal": 1} and status["sent"]["parts"] == flagged
    sync_log = (logs / "sync.log").read_text()
    assert sync_log.count("the hub did not answer") == 2  # once per loop, not once per try
    assert "the hub answers again" in sync_log
