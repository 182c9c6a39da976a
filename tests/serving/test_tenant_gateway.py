"""Through the real gateway (gRPC over TLS on loopback, the real embedded Triton, SQLite), two tenants:

- RELIABILITY.md 9: each record carries exactly the traceability fields listed, equal to what the frame, the
  served model and the recipe in force say (defects: what ONNX Runtime finds on the same image, run apart);
- RELIABILITY.md 15: with mutual TLS, a camera without a certificate of the plant CA does not get in;
- RELIABILITY.md 16 and 17: a token proves one camera of one tenant; a tenant's camera names only its own
  recipes, its recipes only its own models or platform models it was allowed, and a withdrawn grant stops
  the next frames; a frame claiming another tenant's camera is refused and leaves no trace;
- what a camera is told: the part of an error it can act on, never a server path, SQL or a traceback; the
  details are in the gateway's log under the record id the message names.

Synthetic PCB images only (no ../shared): these tests never skip for want of data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from lineqa import __version__, logs
from lineqa.datasets.synth import Surface, generate_part
from lineqa.db import as_utc
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.embedded_triton import EmbeddedTriton, free_port
from lineqa.serving.gateway import GatewaySettings, create_server
from lineqa.serving.image_store import ImagePolicy, ImageStore
from lineqa.serving.inspector import Inspector, InspectorSettings
from lineqa.serving.local_plant import LocalPlant, provision_local_plant, set_recipe
from lineqa.serving.model_access import ModelGrants
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.predict import PredictConfig, predict_files
from lineqa.serving.recipes import RecipeBook, RecipeRef, RecipeStore
from lineqa.serving.records import RecordStore
from lineqa.serving.schema import inspections
from lineqa.serving.triton_client import TritonClient
from lineqa.vision.detections import Detections
from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import parse_recipe
from lineqa.vision.yolo_output import DecodeOptions
from tests.helpers.matching import assert_same_detections
from tests.helpers.serving import embedded_triton, lineup_of

adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")

pytestmark = pytest.mark.slow

ASSET = Path(__file__).resolve().parent.parent / "assets" / "deeppcb-yolo11n-320.pt"
# Thresholds low enough that the DeepPCB detector flags something on synthetic boards: records get defects.
RECIPE = "id: pcb\nmodel: {name: acme.pcb}\ndefaults: {fail_confidence: 0.02, review_confidence: 0.003}\n"
RECORD_FIELDS = {  # RELIABILITY.md 9, in the records' column names
    "tenant", "line_id", "camera_id", "sequence", "part_id", "capture_time", "receive_time", "model_name",
    "model_version", "recipe_id", "recipe_version", "image_sha256", "verdict", "defects_json", "service_version",
}  # fmt: skip


@dataclass
class Served:
    repository: ModelRepository
    triton: EmbeddedTriton
    images: list[bytes]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The committed DeepPCB detector as tenant acme's model ``acme.pcb`` and as the platform model ``pcb``."""
    work = tmp_path_factory.mktemp("tenant-gateway")
    weights = work / ASSET.name
    weights.write_bytes(ASSET.read_bytes())
    onnx = adapter.export_onnx(weights, 320)
    repository = ModelRepository(work / "models")
    for name in ("acme.pcb", "pcb"):
        repository.add_version(name, onnx)
    images = [bytes(cv2.imencode(".jpg", generate_part(Surface.PCB, seed).image)[1]) for seed in range(6)]
    with embedded_triton(repository) as triton:
        yield Served(repository, triton, images)


@dataclass
class Plant:
    inspector: Inspector
    acme: LocalPlant
    globex: LocalPlant
    client_ca: bytes | None = None  # set: mutual TLS

    def server(self) -> grpc.aio.Server:
        cert, key = self.acme.server_tls()
        tokens = TokenCache(AccessStore(self.inspector.store.engine))
        settings = GatewaySettings(port=0, tls_cert=cert, tls_key=key, tls_client_ca=self.client_ca)
        gateway = create_server(self.inspector, settings, tokens)
        self.port = gateway.port
        return gateway.server


def make_plant(served: Served, home: Path, triton_url: str | None = None, images: Path | None = None) -> Plant:
    url = sqlite_url(home / "lineqa.db")
    acme = provision_local_plant(home, tenant="acme", cameras=("cam-1",), db_url=url, recipes={"pcb": RECIPE})
    globex = provision_local_plant(home, tenant="globex", line="press-9", cameras=("cam-g",), db_url=url)
    engine = open_database(url)
    client = TritonClient(triton_url or served.triton.endpoints.grpc_url, timeout_s=10)
    settings = InspectorSettings(image_policy=ImagePolicy.ALL)
    store = ImageStore(images or home / "images")
    recipes = RecipeBook(RecipeStore(engine), ttl_s=0.5)
    inspector = Inspector(lineup_of(served.repository), recipes, client, RecordStore(engine), settings, store)
    return Plant(inspector, acme, globex)


LINES = {"cam-1": "line-1", "cam-g": "press-9"}


def frame(camera: str, sequence: int, image: bytes, recipe: str = "pcb", line: str | None = None) -> pb.Frame:
    captured = Timestamp()
    captured.FromDatetime(datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc) + timedelta(seconds=sequence))
    line = LINES.get(camera, "line-1") if line is None else line
    identity = pb.FrameIdentity(camera_id=camera, line_id=line, sequence=sequence, part_id=f"SN-{sequence:05d}",
                                capture_time=captured)  # fmt: skip
    return pb.Frame(identity=identity, recipe_id=recipe, image=pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=image))


async def _stream(
    plant: Plant, token: str | None, frames: list[pb.Frame], credentials: grpc.ChannelCredentials | None = None
) -> tuple[list[pb.InspectionResult], str]:
    server = plant.server()
    await server.start()
    try:
        credentials = credentials or plant.acme.channel_credentials()
        async with grpc.aio.secure_channel(f"localhost:{plant.port}", credentials) as channel:

            async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
                for f in frames:
                    yield pb.StreamInspectRequest(frame=f)

            metadata = (("authorization", f"Bearer {token}"),) if token else None
            results: list[pb.InspectionResult] = []
            try:
                async for response in pb_grpc.InspectionServiceStub(channel).StreamInspect(
                    requests(), metadata=metadata
                ):
                    results.append(response.result)
            except grpc.aio.AioRpcError as exc:
                return results, exc.code().name
            return results, "OK"
    finally:
        await server.stop(1)


def stream(
    plant: Plant, camera_plant: LocalPlant, frames: list[pb.Frame], camera: str | None = None
) -> list[pb.InspectionResult]:
    """Stream ``frames`` with the token of ``camera`` (default: the plant's first) and return the results."""
    token = camera_plant.tokens[camera or next(iter(camera_plant.tokens))]
    results, ended = asyncio.run(_stream(plant, token, frames))
    assert ended == "OK", ended
    return sorted(results, key=lambda r: r.frame.sequence)


def records(plant: Plant) -> list[dict[str, object]]:
    with plant.inspector.store.engine.connect() as conn:  # the platform's view: every tenant's rows
        return [dict(r) for r in conn.execute(select(inspections).order_by(inspections.c.sequence)).mappings()]


def detections_of(defects: list[dict[str, object]]) -> Detections:
    return Detections(
        np.array([d["box"] for d in defects], np.float32).reshape(-1, 4),
        np.array([d["confidence"] for d in defects], np.float32),
        np.array([d["class_id"] for d in defects], np.int64),
    )


def test_each_record_carries_what_reliability_9_lists(served: Served, tmp_path: Path) -> None:
    plant = make_plant(served, tmp_path)
    frames = [frame("cam-1", i + 1, image) for i, image in enumerate(served.images)]
    started = datetime.now(timezone.utc)
    results = stream(plant, plant.acme, frames)
    finished = datetime.now(timezone.utc)
    rows = records(plant)
    assert len(rows) == len(frames) == len(results)
    engine = plant.inspector.store.engine
    recipe = RecipeStore(engine).version(RecipeRef("acme", "pcb"))
    on_line = served.repository.serving_version("acme.pcb")
    paths = []
    for f in frames:
        paths.append(tmp_path / f"{f.identity.sequence}.jpg")
        paths[-1].write_bytes(f.image.data)
    recipe_model = parse_recipe(recipe.yaml)
    options = DecodeOptions(conf_threshold=recipe_model.min_confidence, iou_threshold=recipe_model.iou_threshold)
    apart = list(predict_files(paths, OnnxModel(on_line.model_file), recipe_model, PredictConfig(options)))
    flagged_total = 0
    for f, row, result, expected in zip(frames, rows, results, apart, strict=True):
        assert row.keys() >= RECORD_FIELDS
        identity = f.identity
        assert (row["tenant"], row["line_id"], row["camera_id"], row["sequence"], row["part_id"]) == (
            "acme", "line-1", "cam-1", identity.sequence, identity.part_id,
        )  # fmt: skip
        assert as_utc(row["capture_time"]) == identity.capture_time.ToDatetime(timezone.utc)  # type: ignore[arg-type]
        assert started <= as_utc(row["receive_time"]) <= finished  # type: ignore[arg-type]
        assert (row["model_name"], row["model_version"]) == ("acme.pcb", on_line.version)
        assert (row["recipe_id"], row["recipe_version"]) == ("pcb", recipe.sha256)
        assert row["image_sha256"] == hashlib.sha256(f.image.data).hexdigest()
        assert row["service_version"] == __version__
        assert row["verdict"] == expected["verdict"] == pb.Verdict.Name(result.verdict).removeprefix("VERDICT_")
        assert (result.model.name, result.recipe.version, result.record_id) == (
            "acme.pcb",
            recipe.sha256,
            row["record_id"],
        )
        stored = json.loads(str(row["defects_json"]))
        flagged = [d for d in expected["detections"] if d["disposition"] in ("defect", "review")]
        assert [d["class"] for d in stored] == [d.class_name for d in result.defects]
        named = [{**d, "class_id": on_line.metadata.class_names.index(d["class"])} for d in stored]
        flagged_total += assert_same_detections(
            detections_of(named), detections_of(flagged), conf=0.003, where=f"frame {identity.sequence}"
        ).matched
    assert flagged_total >= 5, "the records' defects were compared with nothing"


def test_a_tenant_uses_only_its_recipes_and_the_models_it_may(served: Served, tmp_path: Path) -> None:
    plant = make_plant(served, tmp_path)
    engine, image = plant.inspector.store.engine, served.images[0]
    results = stream(plant, plant.globex, [frame("cam-g", 1, image), frame("cam-g", 2, image, "acme/pcb")])
    assert [(r.verdict, r.error.code, r.error.message) for r in results] == [
        (pb.VERDICT_ERROR, pb.ERROR_CODE_UNKNOWN_RECIPE, "no recipe 'pcb'"),  # acme's: as if it did not exist
        (pb.VERDICT_ERROR, pb.ERROR_CODE_UNKNOWN_RECIPE, "no recipe 'acme/pcb'"),
    ]
    store = RecipeStore(engine)
    with pytest.raises(RecipeError, match="may not use"):  # acme's model, under globex's own recipe
        store.set(RecipeRef("globex", "pcb"), RECIPE, by="eve", reason="borrow")
    platform = RECIPE.replace("acme.pcb", "pcb")
    with pytest.raises(RecipeError, match="may not use"):  # the platform model, before it is granted
        store.set(RecipeRef("globex", "pcb"), platform, by="eve", reason="pooled base")
    ModelGrants(engine).change("globex", "pcb", allowed=True, by="ops", reason="pilot on the pooled base")
    store.set(RecipeRef("globex", "pcb"), platform, by="eve", reason="pooled base")
    (judged,) = stream(plant, plant.globex, [frame("cam-g", 3, image)])
    assert judged.verdict != pb.VERDICT_ERROR and judged.model.name == "pcb", judged.error.message
    ModelGrants(engine).change("globex", "pcb", allowed=False, by="ops", reason="pilot over")
    time.sleep(0.6)  # the gateway's recipe cache lives 0.5 s here
    (refused,) = stream(plant, plant.globex, [frame("cam-g", 4, image)])
    assert refused.error.code == pb.ERROR_CODE_UNKNOWN_RECIPE and "may not use" in refused.error.message
    assert [(r["tenant"], r["sequence"], r["model_name"]) for r in records(plant)] == [("globex", 3, "pcb")]


def test_a_frame_for_another_tenants_camera_is_denied_and_leaves_no_trace(served: Served, tmp_path: Path) -> None:
    plant = make_plant(served, tmp_path)
    image = served.images[0]
    for camera, line in (("cam-g", "press-9"), ("cam-1", "press-9")):
        results, ended = asyncio.run(_stream(plant, plant.acme.tokens["cam-1"], [frame(camera, 1, image, line=line)]))
        assert (results, ended) == ([], "PERMISSION_DENIED")
    # Without a line the identity is incomplete: that frame's own INVALID_FRAME, nothing judged or stored.
    (incomplete,), ended = asyncio.run(_stream(plant, plant.acme.tokens["cam-1"], [frame("cam-g", 1, image, line="")]))
    assert ended == "OK" and incomplete.error.code == pb.ERROR_CODE_INVALID_FRAME
    for token in (None, "lqa_0011223344556677_" + "x" * 43):
        assert asyncio.run(_stream(plant, token, [frame("cam-1", 1, image)])) == ([], "UNAUTHENTICATED")
    assert records(plant) == []
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").rglob("*.jpg"))


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The lines logged meanwhile, as ``lineqa serve -v`` writes them (:func:`lineqa.logs.configure`, DEBUG);
    the list is filled when the block ends."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("sqlalchemy").level
    buffer = io.StringIO()
    logs.configure(verbose=True, stream=buffer)
    lines: list[str] = []
    try:
        yield lines
    finally:
        lines.extend(buffer.getvalue().splitlines())
        root.handlers[:], level, sqlalchemy_level = saved
        root.setLevel(level)
        logging.getLogger("sqlalchemy").setLevel(sqlalchemy_level)


def test_a_camera_is_told_what_it_can_act_on_and_the_log_keeps_the_rest(served: Served, tmp_path: Path) -> None:
    home = tmp_path / "home"
    not_a_folder = tmp_path / "images-is-a-file"
    not_a_folder.write_bytes(b"")
    plants = {
        "ok": make_plant(served, home),
        "storage": make_plant(served, tmp_path / "home2", images=not_a_folder),
        "triton": make_plant(served, tmp_path / "home3", triton_url=f"127.0.0.1:{free_port()}"),
    }
    pinned = RECIPE.replace("id: pcb", "id: pinned").replace("acme.pcb}", "acme.pcb, version: 9}")
    set_recipe(plants["ok"].inspector.store.engine, "acme", "pinned", pinned)
    image = served.images[0]
    logged: list[str] = []
    cases = {  # plant, frame -> (code, what the camera may read)
        "unknown recipe": ("ok", frame("cam-1", 1, image, "nope"), pb.ERROR_CODE_UNKNOWN_RECIPE, "no recipe 'nope'"),
        "truncated image": ("ok", frame("cam-1", 2, image[:200]), pb.ERROR_CODE_INVALID_IMAGE, "JPEG"),
        "no such version": ("ok", frame("cam-1", 3, image, "pinned"), pb.ERROR_CODE_MODEL_UNAVAILABLE, "not available"),
        "storage": ("storage", frame("cam-1", 4, image), pb.ERROR_CODE_STORAGE_FAILURE, "could not be stored"),
        "triton down": ("triton", frame("cam-1", 5, image), pb.ERROR_CODE_MODEL_UNAVAILABLE, "not available"),
    }
    for name, (which, sent, code, says) in cases.items():
        with captured_log() as lines:
            (result,) = stream(plants[which], plants[which].acme, [sent])
        logged += lines
        message = result.error.message
        assert result.verdict == pb.VERDICT_ERROR and result.error.code == code, (name, message)
        assert says.lower() in message.lower(), (name, message)
        for leak in (str(tmp_path), "/tmp", "Traceback", 'File "', "SELECT", "INSERT", "sqlite"):
            assert leak not in message, (name, message)
        if code in (pb.ERROR_CODE_UNKNOWN_RECIPE, pb.ERROR_CODE_INVALID_IMAGE):
            continue  # the camera's own fault: the message is the whole story
        record_id = message.rsplit("record ", 1)[1].rstrip(")")
        entry = [i for i, line in enumerate(lines) if f"record {record_id}" in line]
        assert entry, (name, lines)
        assert any("Traceback" in line for line in lines[entry[0] :]), (name, lines)  # the details are in the log
    assert any("has no version 9 in the repository" in line for line in logged)  # why the model was not available


def test_mutual_tls_refuses_a_camera_without_a_plant_certificate(served: Served, tmp_path: Path) -> None:
    """RELIABILITY.md 15: TLS always; with mutual TLS, a client certificate of the plant CA as well."""
    plant = make_plant(served, tmp_path)
    pki = plant.acme.pki
    plant.client_ca = pki.ca_cert.read_bytes()
    cert, key = pki.client("cam-1")
    token, image = plant.acme.tokens["cam-1"], served.images[0]
    anonymous = grpc.ssl_channel_credentials(plant.client_ca)
    results, ended = asyncio.run(_stream(plant, token, [frame("cam-1", 1, image)], anonymous))
    assert (results, ended) == ([], "UNAVAILABLE")  # the handshake itself fails
    certified = grpc.ssl_channel_credentials(plant.client_ca, key.read_bytes(), cert.read_bytes())
    (judged,), ended = asyncio.run(_stream(plant, token, [frame("cam-1", 2, image)], certified))
    assert ended == "OK" and judged.verdict != pb.VERDICT_ERROR, judged.error.message
