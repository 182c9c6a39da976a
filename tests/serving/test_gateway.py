"""End to end over real gRPC on loopback: streaming client → gateway → real embedded Triton → records.

Real DeepPCB frames through the committed DeepPCB detector. Every frame gets exactly one result; the
detections equal ``lineqa predict``'s on the same files; bad frames get their own ERROR result and the stream
goes on; a replayed frame returns its original result and stores nothing new; a dead Triton gives ERROR,
never PASS, and health says NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.embedded_triton import EmbeddedTriton, free_port
from lineqa.serving.gateway import Gateway, GatewaySettings, create_server
from lineqa.serving.image_store import ImageStore
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import LocalPlant, provision_local_plant, set_recipe
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.recipes import RecipeBook, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.references import ReferenceStore
from lineqa.serving.triton_client import TritonClient
from lineqa.vision.detections import Detections
from tests.helpers.deeppcb import deeppcb_pairs
from tests.helpers.matching import assert_same_detections
from tests.helpers.serving import embedded_triton, lineup_of

adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")
pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parent.parent / "assets" / "deeppcb-yolo11n-320.pt"
RECIPE = "id: pcb\nmodel: {name: deeppcb}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.25}\n"


def deeppcb_onnx(work: Path) -> Path:
    """The committed DeepPCB detector exported to ONNX at 320 under ``work``."""
    weights = work / ASSET.name
    weights.write_bytes(ASSET.read_bytes())
    return Path(adapter.export_onnx(weights, 320))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelRepository, Path, EmbeddedTriton]]:
    work = tmp_path_factory.mktemp("gateway")
    repository = ModelRepository(work / "models")
    repository.add_version("deeppcb", deeppcb_onnx(work))
    (work / "recipes").mkdir()
    (work / "recipes" / "pcb.yaml").write_text(RECIPE)  # for lineqa predict; the gateway reads its database
    with embedded_triton(repository) as triton:
        yield repository, work, triton


@dataclass
class Rig:
    """An inspector on its own database, with a plant (TLS certificates, tenant ``acme``, camera tokens)."""

    inspector: Inspector
    plant: LocalPlant

    def server(self, token_cache_s: float = 5.0, **settings: Any) -> Gateway:
        cert, key = self.plant.server_tls()
        tokens = TokenCache(AccessStore(self.inspector.store.engine), ttl_s=token_cache_s)
        return create_server(self.inspector, GatewaySettings(port=0, tls_cert=cert, tls_key=key, **settings), tokens)

    def channel(self, port: int) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(f"localhost:{port}", self.plant.channel_credentials())


def make_rig(
    served: tuple[ModelRepository, Path, EmbeddedTriton],
    db: Path,
    triton_url: str | None = None,
    url: str = "",
    references: ReferenceStore | None = None,
) -> Rig:
    """A rig whose database is SQLite at ``db`` or, given, the database at ``url`` (images beside ``db``), with
    the golden samples of ``references``."""
    repository, _, triton = served
    client = TritonClient(triton_url or triton.endpoints.grpc_url, timeout_s=10)
    images = ImageStore(db.parent / "images")
    url = url or sqlite_url(db)
    plant = provision_local_plant(db.parent, tenant="acme", cameras=("cam-1", "cam-2"), db_url=url,
                                  recipes={"pcb": RECIPE})  # fmt: skip
    engine = open_database(url)
    recipes = RecipeBook(RecipeStore(engine))
    inspector = Inspector(
        lineup_of(repository, recipes), recipes, client, RecordStore(engine), images=images, references=references
    )
    return Rig(inspector, plant)


def frame(sequence: int, data: bytes, encoding: int = pb.IMAGE_ENCODING_JPEG, recipe: str = "pcb") -> pb.Frame:
    identity = pb.FrameIdentity(camera_id="cam-1", line_id="line-1", part_id=f"P{sequence}", sequence=sequence)
    return pb.Frame(identity=identity, recipe_id=recipe, image=pb.Image(encoding=encoding, data=data))


async def stream(rig: Rig, frames: list[pb.Frame], camera: str = "cam-1") -> list[pb.InspectionResult]:
    """Stream ``frames`` over TLS with ``camera``'s token; the results, or the call's error."""
    gateway = rig.server()
    await gateway.server.start()
    try:
        async with rig.channel(gateway.port) as channel:
            stub = pb_grpc.InspectionServiceStub(channel)

            async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
                for f in frames:
                    yield pb.StreamInspectRequest(frame=f)

            call = stub.StreamInspect(requests(), metadata=rig.plant.call_metadata(camera))
            return [response.result async for response in call]
    finally:
        await gateway.server.stop(1)
        await rig.inspector.triton.close()


def defects_of(result: pb.InspectionResult) -> Detections:
    """The defects a gateway result reports, as detections."""
    return Detections(
        np.array([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in result.defects], np.float32).reshape(-1, 4),
        np.array([d.confidence for d in result.defects], np.float32),
        np.array([d.class_id for d in result.defects], np.int64),
    )


def flagged_of(record: dict[str, Any]) -> Detections:
    """The detections of a ``lineqa predict`` JSON line that its recipe flags (defect or review)."""
    flagged = [d for d in record["detections"] if d["disposition"] in ("defect", "review")]
    return Detections(
        np.array([d["box"] for d in flagged], np.float32).reshape(-1, 4),
        np.array([d["confidence"] for d in flagged], np.float32),
        np.array([d["class_id"] for d in flagged], np.int64),
    )


def boards(deeppcb_root: Path, count: int) -> list[Path]:
    return [image for image, _ in deeppcb_pairs(deeppcb_root)[1:1000:80][:count]]


def test_stream_of_real_frames_matches_lineqa_predict(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = boards(deeppcb_root, 12)
    rig = make_rig(served, tmp_path / "records.db")
    inspector = rig.inspector
    results = asyncio.run(stream(rig, [frame(i + 1, p.read_bytes()) for i, p in enumerate(paths)]))
    by_sequence = {r.frame.sequence: r for r in results}
    assert len(results) == len(paths) and sorted(by_sequence) == list(range(1, len(paths) + 1))
    assert [r.error.message for r in results if r.error.message] == []
    assert inspector.store.count() == len(paths)
    registry = inspector.metrics.registry
    labels = {"tenant": "acme", "line": "line-1", "model": "deeppcb", "version": "1"}
    frames = sum(registry.get_sample_value("lineqa_frames_total", {**labels, "verdict": v}) or 0
                 for v in ("PASS", "FAIL", "REVIEW"))  # fmt: skip
    assert frames == len(paths)
    inference = registry.get_sample_value("lineqa_stage_seconds_count", {"stage": "inference", "model": "deeppcb"})
    assert inference == len(paths)
    defects = sum(len(r.defects) for r in results)
    counted = sum(s.value for m in registry.collect() if m.name == "lineqa_defects" for s in m.samples
                  if s.name == "lineqa_defects_total")  # fmt: skip
    assert counted == defects > 0
    assert registry.get_sample_value("lineqa_frames_in_flight") == 0
    with inspector.store.engine.connect() as conn:  # flagged parts keep their image, PASS parts in the sample too
        rows = conn.exec_driver_sql("SELECT verdict, image_key, image_sha256, sequence FROM inspections").all()
    assert {verdict for verdict, _, _, _ in rows} & {"FAIL", "REVIEW"}
    for verdict, key, sha, sequence in rows:
        if verdict == "PASS" and not PassSample().contains(sequence):
            assert key is None
        else:
            assert key == f"acme/{sha[:2]}/{sha}.jpg"
            assert inspector.images is not None and inspector.images.get("acme", key)

    repository, work, _ = served
    model_file = repository.latest("deeppcb").model_file
    out = tmp_path / "predict.jsonl"
    cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(model_file), "--recipe",
           str(work / "recipes" / "pcb.yaml"), "--output", str(out), *map(str, paths)]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    expected = [json.loads(line) for line in out.read_text().splitlines()]
    flagged_total = 0
    for sequence, record in enumerate(expected, start=1):
        result = by_sequence[sequence]
        assert result.verdict == getattr(pb, f"VERDICT_{record['verdict']}")
        assert result.model.name == "deeppcb" and result.model.version == 1
        assert result.recipe.id == "pcb" and result.recipe.version == record["recipe"]["version"]
        assert result.record_id and not result.replay
        matched = assert_same_detections(defects_of(result), flagged_of(record), conf=0.25, where=f"frame {sequence}")
        flagged_total += matched.matched
    assert flagged_total >= 20


def test_non_square_frames_get_lineqa_predicts_detections(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One preprocessing path: crops of real boards, wide and tall, through a dynamic-size export. ``yolo
    predict`` would pad them only to the next stride multiple; ``lineqa predict`` and the gateway both
    letterbox to the full input size, so they find the same defects and give the same verdicts."""
    paths = []
    for index, board in enumerate(boards(deeppcb_root, 6)):
        image = cv2.imread(str(board))
        crop = image[:360, :] if index % 2 else image[:, 40:440]  # 640x360 and 400x640
        paths.append(tmp_path / f"crop-{index}.png")
        cv2.imwrite(str(paths[-1]), crop)
    assert len({cv2.imread(str(p)).shape for p in paths}) == 2
    rig = make_rig(served, tmp_path / "records.db")
    frames = [frame(i + 1, p.read_bytes(), pb.IMAGE_ENCODING_PNG) for i, p in enumerate(paths)]
    results = {r.frame.sequence: r for r in asyncio.run(stream(rig, frames))}
    repository, work, _ = served
    out = tmp_path / "predict.jsonl"
    cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(repository.latest("deeppcb").model_file),
           "--recipe", str(work / "recipes" / "pcb.yaml"), "--output", str(out), *map(str, paths)]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    matched = 0
    for sequence, record in enumerate((json.loads(line) for line in out.read_text().splitlines()), start=1):
        result = results[sequence]
        assert result.verdict == getattr(pb, f"VERDICT_{record['verdict']}"), f"crop {sequence}"
        found = assert_same_detections(defects_of(result), flagged_of(record), conf=0.25, where=f"crop {sequence}")
        matched += found.matched
    assert matched >= 5


def test_bad_frames_get_their_own_error_and_the_stream_goes_on(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = boards(deeppcb_root, 1)[0].read_bytes()
    bomb = bytes.fromhex("89504e470d0a1a0a0000000d49484452000186a0000186a00802000000") + b"\x00" * 40
    frames = [
        frame(1, good),
        frame(2, good[: len(good) // 2]),  # truncated
        frame(3, bomb, pb.IMAGE_ENCODING_PNG),  # 100000 x 100000 header
        frame(4, b"GIF89a" + b"\x00" * 20),
        frame(5, good, recipe="no-such-recipe"),
        frame(6, b""),
        frame(7, good),
    ]
    rig = make_rig(served, tmp_path / "r.db")
    results = {r.frame.sequence: r for r in asyncio.run(stream(rig, frames))}
    assert len(results) == len(frames)
    expected = {
        2: pb.ERROR_CODE_INVALID_IMAGE,
        3: pb.ERROR_CODE_IMAGE_TOO_LARGE,
        4: pb.ERROR_CODE_UNSUPPORTED_ENCODING,
        5: pb.ERROR_CODE_UNKNOWN_RECIPE,
        6: pb.ERROR_CODE_INVALID_FRAME,
    }
    for sequence, code in expected.items():
        assert results[sequence].verdict == pb.VERDICT_ERROR and results[sequence].error.code == code
        assert results[sequence].error.message and results[sequence].record_id  # the recorded attempt
    (attempt,) = rig.inspector.store.attempts("acme", "cam-1", 2)
    assert attempt.record_id == results[2].record_id and attempt.error_code == "ERROR_CODE_INVALID_IMAGE"
    for sequence in (1, 7):
        assert results[sequence].verdict in (pb.VERDICT_PASS, pb.VERDICT_FAIL, pb.VERDICT_REVIEW)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_replayed_frame_returns_the_original_result(  # type: ignore[no-untyped-def]
    served, deeppcb_root: Path, tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    """Also the gateway end to end on PostgreSQL: records, tokens and the replay check all live there."""
    data = boards(deeppcb_root, 1)[0].read_bytes()
    db = tmp_path / "r.db"
    url = request.getfixturevalue("empty_postgres_url") if database == "postgresql" else ""
    (first,) = asyncio.run(stream(make_rig(served, db, url=url), [frame(42, data)]))
    rig = make_rig(served, db, url=url)
    inspector = rig.inspector
    (again,) = asyncio.run(stream(rig, [frame(42, data)]))
    assert again.replay and not first.replay
    assert again.record_id == first.record_id and again.verdict == first.verdict
    assert list(again.defects) == list(first.defects)
    assert inspector.store.count() == 1


def test_dead_triton_gives_error_never_pass_and_not_serving(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db", triton_url=f"127.0.0.1:{free_port()}")
    results = asyncio.run(stream(rig, [frame(i, data) for i in range(1, 4)]))
    assert [r.verdict for r in results] == [pb.VERDICT_ERROR] * 3
    assert {r.error.code for r in results} == {pb.ERROR_CODE_MODEL_UNAVAILABLE}
    assert rig.inspector.store.count() == 0


@pytest.mark.parametrize(("alive", "status"), [(True, "SERVING"), (False, "NOT_SERVING")])
def test_health_follows_triton(served, tmp_path: Path, alive: bool, status: str) -> None:  # type: ignore[no-untyped-def]
    url = None if alive else f"127.0.0.1:{free_port()}"
    rig = make_rig(served, tmp_path / "r.db", triton_url=url)

    async def check() -> str:
        gateway = rig.server()
        server, port, reporter = gateway.server, gateway.port, gateway.health
        await server.start()
        try:
            await reporter.set(await rig.inspector.ready())
            async with rig.channel(port) as channel:  # health needs no token
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
                return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        finally:
            await server.stop(1)
            await rig.inspector.triton.close()

    assert asyncio.run(check()) == status


def test_overload_gets_resource_exhausted_never_silence(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db")
    inspector = rig.inspector

    async def flood() -> list[str]:
        gateway = rig.server(max_in_flight=2)
        await gateway.server.start()
        try:
            async with rig.channel(gateway.port) as channel:
                stub = pb_grpc.InspectionServiceStub(channel)

                async def one(sequence: int) -> str:
                    try:
                        request = pb.InspectRequest(frame=frame(sequence, data))
                        reply = await stub.Inspect(request, metadata=rig.plant.call_metadata("cam-1"))
                        return pb.Verdict.Name(reply.result.verdict)
                    except grpc.aio.AioRpcError as exc:
                        return exc.code().name

                return list(await asyncio.gather(*(one(s) for s in range(1, 31))))
        finally:
            await gateway.server.stop(1)
            await inspector.triton.close()

    outcomes = asyncio.run(flood())
    assert len(outcomes) == 30
    assert "RESOURCE_EXHAUSTED" in outcomes
    judged = [o for o in outcomes if o in ("VERDICT_PASS", "VERDICT_FAIL", "VERDICT_REVIEW")]
    assert judged and len(judged) + outcomes.count("RESOURCE_EXHAUSTED") == 30  # each call: a verdict or a refusal
    assert inspector.store.count() == len(judged)


def test_tiled_recipe_through_the_gateway_matches_lineqa_predict(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A 1280 px mosaic of four boards under a recipe with 640 px tiles: the gateway's batched tiles through
    Triton give what ``lineqa predict`` gives with the same recipe."""
    repository, work, _ = served
    tiled = RECIPE.replace("id: pcb", "id: pcb-tiled") + "tiling: {tile_px: 640}\n"
    (work / "recipes" / "pcb-tiled.yaml").write_text(tiled)
    quad = [cv2.imread(str(p)) for p in boards(deeppcb_root, 4)]
    mosaic_path = tmp_path / "mosaic.png"
    cv2.imwrite(str(mosaic_path), np.vstack([np.hstack(quad[:2]), np.hstack(quad[2:])]))
    rig = make_rig(served, tmp_path / "r.db")
    set_recipe(rig.inspector.store.engine, "acme", "pcb-tiled", tiled)
    (result,) = asyncio.run(stream(rig, [frame(1, mosaic_path.read_bytes(), pb.IMAGE_ENCODING_PNG, "pcb-tiled")]))
    assert result.verdict != pb.VERDICT_ERROR, result.error.message

    out = tmp_path / "predict.jsonl"
    cmd = [sys.executable, "-m", "lineqa.cli", "predict", "--model", str(repository.latest("deeppcb").model_file),
           "--recipe", str(work / "recipes" / "pcb-tiled.yaml"), "--output", str(out), str(mosaic_path)]  # fmt: skip
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    record = json.loads(out.read_text())
    assert result.verdict == getattr(pb, f"VERDICT_{record['verdict']}")
    matched = assert_same_detections(defects_of(result), flagged_of(record), conf=0.25, where="tiled mosaic")
    assert matched.matched >= 10


async def collect(
    rig: Rig, calls: list[tuple[str | None, list[pb.Frame]]], **settings: Any
) -> list[tuple[list[pb.InspectionResult], str]]:
    """Run one stream per (token's camera or None for no token, frames) on one server; for each, the results
    it got and how the call ended."""
    gateway = rig.server(**settings)
    await gateway.server.start()
    try:
        async with rig.channel(gateway.port) as channel:
            stub = pb_grpc.InspectionServiceStub(channel)

            async def one(camera: str | None, frames: list[pb.Frame]) -> tuple[list[pb.InspectionResult], str]:
                async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
                    for f in frames:
                        yield pb.StreamInspectRequest(frame=f)
                        await asyncio.sleep(0.1)

                metadata = rig.plant.call_metadata(camera) if camera else None
                results: list[pb.InspectionResult] = []
                try:
                    async for response in stub.StreamInspect(requests(), metadata=metadata):
                        results.append(response.result)
                except grpc.aio.AioRpcError as exc:
                    return results, exc.code().name
                return results, "OK"

            return [await one(camera, frames) for camera, frames in calls]
    finally:
        await gateway.server.stop(1)
        await rig.inspector.triton.close()


def claiming(camera: str, sequences: range, data: bytes, line: str = "line-1") -> list[pb.Frame]:
    frames = [frame(s, data) for s in sequences]
    for f in frames:
        f.identity.camera_id, f.identity.line_id = camera, line
    return frames


def test_token_of_tenant_a_claiming_camera_of_b_is_denied(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    db = tmp_path / "r.db"
    rig = make_rig(served, db)
    other = provision_local_plant(tmp_path, tenant="globex", line="line-9", cameras=("cam-b",), db_url=sqlite_url(db))
    assert other.tokens["cam-b"] != rig.plant.tokens["cam-1"]
    outcomes = asyncio.run(collect(rig, [
        ("cam-1", claiming("cam-b", range(1, 4), data, line="line-9")),  # tenant B's camera and line
        ("cam-1", claiming("cam-2", range(1, 4), data)),  # another camera of the same tenant
        ("cam-1", claiming("cam-1", range(1, 4), data, line="line-9")),  # its own camera on a line not its own
    ]))  # fmt: skip
    assert outcomes == [([], "PERMISSION_DENIED")] * 3
    assert rig.inspector.store.count() == 0
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").rglob("*.jpg"))


def test_frames_taken_before_a_denied_one_are_answered(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db")
    frames = claiming("cam-1", range(1, 3), data) + claiming("cam-2", range(3, 5), data)
    ((results, ended),) = asyncio.run(collect(rig, [("cam-1", frames)]))
    assert ended == "PERMISSION_DENIED"
    assert [r.frame.sequence for r in results] == [1, 2]
    assert all(r.frame.line_id == "line-1" and r.verdict != pb.VERDICT_ERROR for r in results)
    assert rig.inspector.store.count() == 2


def test_missing_unknown_and_revoked_tokens_are_unauthenticated(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db")
    access = AccessStore(rig.inspector.store.engine)
    good = rig.plant.tokens["cam-2"]
    token_id = good.split("_")[1]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    access.revoke_token(rig.plant.tokens["cam-1"].split("_")[1])
    rig.plant.tokens["forged"] = forged
    rig.plant.tokens["garbage"] = "not-a-token"
    outcomes = asyncio.run(collect(rig, [
        (None, claiming("cam-1", range(1, 3), data)),
        ("garbage", claiming("cam-1", range(1, 3), data)),
        ("forged", claiming("cam-2", range(1, 3), data)),
        ("cam-1", claiming("cam-1", range(1, 3), data)),  # revoked
    ]))  # fmt: skip
    assert [ended for _, ended in outcomes] == ["UNAUTHENTICATED"] * 4
    assert rig.inspector.store.count() == 0
    assert [t.token_id for t in access.tokens() if t.revoked_at is None] == [token_id]


def test_a_token_revoked_during_a_stream_stops_it(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db")
    access = AccessStore(rig.inspector.store.engine)
    frames = claiming("cam-1", range(1, 41), data)  # 4 s of frames at 10 per second

    async def revoke_soon() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(access.revoke_token, rig.plant.tokens["cam-1"].split("_")[1])

    async def scenario() -> list[tuple[list[pb.InspectionResult], str]]:
        revoker = asyncio.create_task(revoke_soon())
        outcome = await collect(rig, [("cam-1", frames)], token_cache_s=0.3)
        await revoker
        return outcome

    ((results, ended),) = asyncio.run(scenario())
    assert ended == "UNAUTHENTICATED"
    assert 3 <= len(results) < 30 and rig.inspector.store.count() == len(results)


def test_mutual_tls_refuses_a_client_without_a_plant_certificate(served, deeppcb_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = boards(deeppcb_root, 1)[0].read_bytes()
    rig = make_rig(served, tmp_path / "r.db")
    cert, key = rig.plant.pki.client("cam-1")
    ca = rig.plant.pki.ca_cert.read_bytes()

    async def scenario() -> list[str]:
        gateway = rig.server(tls_client_ca=ca)
        await gateway.server.start()
        outcomes = []
        try:
            for credentials in (
                grpc.ssl_channel_credentials(ca),
                grpc.ssl_channel_credentials(ca, private_key=key.read_bytes(), certificate_chain=cert.read_bytes()),
            ):
                async with grpc.aio.secure_channel(f"localhost:{gateway.port}", credentials) as channel:
                    stub = pb_grpc.InspectionServiceStub(channel)
                    request = pb.InspectRequest(frame=frame(len(outcomes) + 1, data))
                    try:
                        reply = await stub.Inspect(request, metadata=rig.plant.call_metadata("cam-1"), timeout=20)
                        outcomes.append(pb.Verdict.Name(reply.result.verdict))
                    except grpc.aio.AioRpcError as exc:
                        outcomes.append(exc.code().name)
        finally:
            await gateway.server.stop(1)
            await rig.inspector.triton.close()
        return outcomes

    refused, accepted = asyncio.run(scenario())
    assert refused == "UNAVAILABLE" and accepted in ("VERDICT_PASS", "VERDICT_FAIL", "VERDICT_REVIEW")
