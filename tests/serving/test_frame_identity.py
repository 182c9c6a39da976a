"""A verdict only ever for its own image, over the wire (real gateway, real embedded Triton, synthetic parts):

- a frame without a sequence number, camera or line id gets its own INVALID_FRAME result; the stream goes on;
- a frame sent again with the same image gets its stored result, as a replay, with its identity as sent;
- the same (camera, sequence) with another image is SEQUENCE_CONFLICT, never the stored verdict;
- every ERROR names a record id: the attempt, recorded; the frame's verdict record waits for a judged result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import grpc
import pytest

from lineqa.datasets.synth import Surface, generate_part
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.embedded_triton import EmbeddedTriton
from lineqa.serving.gateway import GatewaySettings, create_server
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.triton_client import TritonClient
from tests.helpers.serving import embedded_triton, lineup_of

pytestmark = pytest.mark.slow


@dataclass
class Line:
    work: Path
    repository: ModelRepository
    triton: EmbeddedTriton


@pytest.fixture(scope="module")
def line(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    work = tmp_path_factory.mktemp("identity")
    repository = ModelRepository(work / "models")
    repository.add_version("metal", tiny_models["yolo11n"])
    with embedded_triton(repository) as triton:
        yield Line(work, repository, triton)


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", generate_part(Surface.METAL, seed).image)[1].tobytes()


def _frame(sequence: int, seed: int, *, camera: str = "cam", line: str = "line-1", recipe: str = "r",
           part: str = "") -> pb.Frame:  # fmt: skip
    identity = pb.FrameIdentity(camera_id=camera, line_id=line, sequence=sequence, part_id=part or f"P{sequence}")
    image = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=_png(seed))
    return pb.Frame(identity=identity, recipe_id=recipe, image=image)


async def _stream(
    line: Line, plant: LocalPlant, store: RecordStore, frames: list[pb.Frame]
) -> list[pb.InspectionResult]:
    recipes = RecipeBook(RecipeStore(store.engine))
    client = TritonClient(line.triton.endpoints.grpc_url, timeout_s=10)
    inspector = Inspector(lineup_of(line.repository, recipes), recipes, client, store)
    cert, key = plant.server_tls()
    settings = GatewaySettings(port=0, tls_cert=cert, tls_key=key)
    gateway = create_server(inspector, settings, TokenCache(AccessStore(store.engine)))
    await gateway.server.start()
    try:
        async with grpc.aio.secure_channel(f"localhost:{gateway.port}", plant.channel_credentials()) as channel:

            async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
                for frame in frames:
                    yield pb.StreamInspectRequest(frame=frame)

            call = pb_grpc.InspectionServiceStub(channel).StreamInspect(requests(), metadata=plant.call_metadata("cam"))
            return [response.result async for response in call]
    finally:
        await gateway.server.stop(1)
        await client.close()
        inspector.storage.close()


@pytest.fixture
def plant(tmp_path: Path) -> LocalPlant:
    return provision_local_plant(tmp_path, cameras=("cam",), recipes={"r": "id: r\nmodel: {name: metal}\n"})


def _store(tmp_path: Path) -> RecordStore:
    return RecordStore(open_database(sqlite_url(tmp_path / "lineqa.db")))


def test_incomplete_identities_get_their_own_invalid_frame_result(
    line: Line, plant: LocalPlant, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    frames = [
        _frame(1, 1),
        _frame(0, 2),  # no sequence number: two such parts would share one key
        _frame(3, 3, camera=""),
        _frame(4, 4, line=""),
        _frame(5, 5),
    ]
    results = asyncio.run(_stream(line, plant, store, frames))
    assert len(results) == 5  # the stream went on after each bad frame
    by_part = {r.frame.part_id: r for r in results}
    for part, missing in (("P0", "sequence"), ("P3", "camera_id"), ("P4", "line_id")):
        result = by_part[part]
        assert result.verdict == pb.VERDICT_ERROR and result.error.code == pb.ERROR_CODE_INVALID_FRAME
        assert missing in result.error.message
    assert by_part["P4"].frame.line_id == ""  # echoed as sent, never filled in
    assert by_part["P1"].verdict != pb.VERDICT_ERROR and by_part["P5"].verdict != pb.VERDICT_ERROR
    assert store.count() == 2


def test_a_replay_needs_the_same_image_and_echoes_the_identity_as_sent(
    line: Line, plant: LocalPlant, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    (first,) = asyncio.run(_stream(line, plant, store, [_frame(7, 1, part="board-A")]))
    again, other = asyncio.run(_stream(line, plant, store, [_frame(7, 1, part="board-A2"), _frame(7, 2, part="B")]))
    assert first.verdict != pb.VERDICT_ERROR and not first.replay
    assert again.replay and again.record_id == first.record_id and again.verdict == first.verdict
    assert again.frame.part_id == "board-A2"  # the identity as sent, not as stored
    assert other.verdict == pb.VERDICT_ERROR and other.error.code == pb.ERROR_CODE_SEQUENCE_CONFLICT
    assert not other.replay and not other.defects and "another image" in other.error.message
    assert store.count() == 1
    (attempt,) = store.attempts("demo", "cam", 7)
    assert attempt.error_code == "ERROR_CODE_SEQUENCE_CONFLICT" and other.record_id == attempt.record_id


def test_an_error_names_its_recorded_attempt_and_a_later_judgement_completes_the_history(
    line: Line, plant: LocalPlant, tmp_path: Path
) -> None:
    store = _store(tmp_path)
    (failed,) = asyncio.run(_stream(line, plant, store, [_frame(9, 1, recipe="absent")]))
    assert failed.verdict == pb.VERDICT_ERROR and failed.error.code == pb.ERROR_CODE_UNKNOWN_RECIPE
    assert failed.record_id and store.find("demo", "cam", 9) is None  # an attempt, not the frame's record
    (judged,) = asyncio.run(_stream(line, plant, store, [_frame(9, 1)]))
    assert judged.verdict != pb.VERDICT_ERROR and not judged.replay
    (attempt,) = store.attempts("demo", "cam", 9)
    assert attempt.record_id == failed.record_id and attempt.error_code == "ERROR_CODE_UNKNOWN_RECIPE"
    assert store.find("demo", "cam", 9) is not None and judged.record_id != failed.record_id
