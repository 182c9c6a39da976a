"""A version switch no frame can fall into: frames streamed at full rate through promote, rollback and promote
again, on one embedded Triton (no successor server): every frame judged, none ERROR, each by the version its
result names, and the line on each new version within seconds of the change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import grpc
import pytest

from lineqa.datasets.synth import Surface, generate_part
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonSettings
from lineqa.serving.gateway import GatewaySettings, create_server
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.model_supervisor import ModelSupervisor
from lineqa.serving.promotions import event
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.served_models import ServedModels
from lineqa.serving.triton_client import TritonClient

pytestmark = pytest.mark.slow
STREAMS, IN_FLIGHT = 2, 4
SWITCH_BUDGET_S = 30.0


def test_promote_rollback_promote_under_full_rate_streams(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    for _ in range(2):
        repository.add_version("metal", tiny_models["yolo11n"])  # v2, the newest, is on the line
    image = cv2.imencode(".png", generate_part(Surface.METAL, 1).image)[1].tobytes()
    cameras = tuple(f"cam-{i}" for i in range(STREAMS))
    plant = provision_local_plant(tmp_path, cameras=cameras, recipes={"r": "id: r\nmodel: {name: metal}\n"})
    engine = open_database(sqlite_url(tmp_path / "lineqa.db"))
    triton = EmbeddedTriton(repository, EmbeddedTritonSettings(ort_threads=1))
    triton.start()
    recipes, served = RecipeBook(RecipeStore(engine)), ServedModels()
    client = TritonClient(triton.endpoints.grpc_url, timeout_s=2)
    supervisor = ModelSupervisor(repository, recipes, served, client, triton)
    supervisor.prepare()
    inspector = Inspector(served, recipes, client, RecordStore(engine))
    server_process = triton._process
    switches: list[tuple[str, int, float]] = []
    servers: list[bool] = []

    async def scenario() -> list[pb.InspectionResult]:
        cert, key = plant.server_tls()
        gateway = create_server(
            inspector, GatewaySettings(port=0, tls_cert=cert, tls_key=key, stream_in_flight=IN_FLIGHT),
            TokenCache(AccessStore(engine)),
        )  # fmt: skip
        await gateway.server.start()
        supervising = asyncio.create_task(supervisor.run(period_s=0.2))
        done = asyncio.Event()
        received: list[pb.InspectionResult] = []

        async def camera(index: int) -> None:
            async def frames() -> AsyncIterator[pb.StreamInspectRequest]:
                sequence = 0
                while not done.is_set():
                    sequence += 1
                    identity = pb.FrameIdentity(camera_id=f"cam-{index}", line_id="line-1", sequence=sequence)
                    img = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=image)
                    yield pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id="r", image=img))

            async with grpc.aio.secure_channel(f"localhost:{gateway.port}", plant.channel_credentials()) as channel:
                call = pb_grpc.InspectionServiceStub(channel).StreamInspect(
                    frames(), metadata=plant.call_metadata(f"cam-{index}")
                )
                async for response in call:
                    received.append(response.result)

        async def switch(action: str, version: int) -> None:
            repository.promotions("metal").append(event(action, version, by="qa"))
            asked = time.monotonic()
            while time.monotonic() - asked < SWITCH_BUDGET_S:
                latest = [r.model.version for r in received[-STREAMS * IN_FLIGHT :] if r.verdict != pb.VERDICT_ERROR]
                if latest and set(latest) == {version}:
                    switches.append((action, version, time.monotonic() - asked))
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"{action} to v{version}: frames still judged by {set(latest)}")

        cameras = [asyncio.create_task(camera(i)) for i in range(STREAMS)]
        try:
            await asyncio.sleep(2)
            await switch("promote", 1)
            await switch("rollback", 2)  # pops v1: the newest version is on the line again
            await switch("promote", 1)
            await asyncio.sleep(1)
            servers.append(triton._process is server_process and triton.alive())
        finally:
            done.set()
            await asyncio.gather(*cameras, return_exceptions=True)
            supervising.cancel()
            await gateway.server.stop(1)
            await client.close()
        return received

    try:
        results = asyncio.run(scenario())
    finally:
        triton.stop()
    errors = [r for r in results if r.verdict == pb.VERDICT_ERROR]
    by_version = {v: sum(r.model.version == v for r in results) for v in (1, 2)}
    print(f"\n{len(results)} frames through promote/rollback/promote; switch times "
          f"{[(a, v, round(s, 1)) for a, v, s in switches]}; frames per version {by_version}")  # fmt: skip
    assert not errors, f"{len(errors)} ERROR results, e.g. {errors[0].error.message!r}"
    assert by_version[1] and by_version[2] and sum(by_version.values()) == len(results)
    assert servers == [True], "a switch must load and unload on the running server, not start another"
    assert [a for a, _, _ in switches] == ["promote", "rollback", "promote"]
