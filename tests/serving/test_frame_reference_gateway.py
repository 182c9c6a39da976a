"""Per-frame golden samples, end to end: TLS gRPC → gateway → real embedded Triton → records.

A frame's own reference (inline, or by the id AddReference gave) is judged exactly as the recipe's golden
sample would be, and replaces it; an id the caller's tenant does not hold, its own missing or another
tenant's, is REFERENCE_UNAVAILABLE, never PASS. A model trained on frame+reference pairs (the committed DeepPCB
detector with the metadata key saying so: its detections mean nothing on pairs, so the path is what is
asserted) is sent the encoded pair, is refused a frame without any reference (REFERENCE_REQUIRED) and is not
run on a pair that cannot be aligned (REVIEW). A frame serialized by a client that predates all this is
judged as before. Synthetic boards only.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.embedded_triton import EmbeddedTriton
from lineqa.serving.local_plant import set_recipe
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.references import ReferenceStore
from lineqa.serving.triton_client import TritonClient
from lineqa.vision.decision import decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import detect, preprocess
from lineqa.vision.perturb import rephotograph
from lineqa.vision.recipe import parse_recipe
from lineqa.vision.reference import ENCODING, align, reference_input
from lineqa.vision.yolo_output import DecodeOptions
from tests.helpers.boards import board, with_defect
from tests.helpers.matching import assert_same_detections
from tests.helpers.serving import embedded_triton
from tests.helpers.wire_baseline import old_message
from tests.serving.test_gateway import Rig, deeppcb_onnx, defects_of, frame, make_rig
from tests.serving.test_golden_gateway import golden_recipe
from tests.serving.test_model_repository import _with_input_encoding

pytestmark = pytest.mark.slow

PAIRS = "deeppcb-pairs"
PAIRS_RECIPE = f"id: pairs\nmodel: {{name: {PAIRS}}}\ndefaults: {{fail_confidence: 0.5, review_confidence: 0.05}}\n"
INSPECT = "/lineqa.inspection.v1.InspectionService/Inspect"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModelRepository, Path, EmbeddedTriton]]:
    """The DeepPCB detector twice on one embedded Triton: as exported, and marked as trained on pairs."""
    work = tmp_path_factory.mktemp("frame-reference")
    onnx = deeppcb_onnx(work)
    repository = ModelRepository(work / "models")
    repository.add_version("deeppcb", onnx)
    repository.add_version(PAIRS, _with_input_encoding(onnx, ENCODING, work / "pairs.onnx"))
    with embedded_triton(repository) as triton:
        yield repository, work, triton


class RecordingTriton(TritonClient):
    """The real Triton client, keeping each batch it sends: what the model was actually given."""

    def __init__(self, url: str) -> None:
        super().__init__(url, timeout_s=10)
        self.sent: list[np.ndarray] = []

    async def infer(self, model: str, version: int, batch: np.ndarray, **options: Any) -> np.ndarray:
        self.sent.append(batch.copy())
        return await super().infer(model, version, batch, **options)


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def with_reference(f: pb.Frame, *, image: bytes = b"", reference_id: str = "") -> pb.Frame:
    if image:
        f.reference_image.CopyFrom(pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=image))
    else:
        f.reference_id = reference_id
    return f


def judged(result: pb.InspectionResult) -> tuple[Any, ...]:
    """What a verdict says about the part, without the frame's identity, record id or timings."""
    return (result.verdict, list(result.reasons), [(d.class_name, d.disposition, d.box) for d in result.defects],
            result.model, result.recipe)  # fmt: skip


async def session(rig: Rig, calls: Any) -> Any:
    """Run ``calls(stub, channel, metadata)`` against a started gateway over TLS with cam-1's token."""
    gateway = rig.server()
    await gateway.server.start()
    try:
        async with rig.channel(gateway.port) as channel:
            return await calls(pb_grpc.InspectionServiceStub(channel), channel, rig.plant.call_metadata("cam-1"))
    finally:
        await gateway.server.stop(1)
        await rig.inspector.triton.close()


async def inspect_all(stub: Any, frames: list[pb.Frame], metadata: Any) -> list[pb.InspectionResult]:
    return [(await stub.Inspect(pb.InspectRequest(frame=f), metadata=metadata)).result for f in frames]


def test_a_frames_own_reference_is_judged_like_the_recipes_and_only_the_tenants(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    references = ReferenceStore(tmp_path / "references")
    golden = png(board())
    golden_id = references.add("acme", golden)
    elsewhere_id = references.add("acme", png(board(seed=5)))  # the recipe "other" names an unrelated board
    foreign_id = references.add("globex", png(board(seed=7)))  # another tenant's golden sample
    rng = np.random.default_rng(11)
    good, defect = png(rephotograph(board(), rng)), png(rephotograph(with_defect(board()), rng))
    rig = make_rig(served, tmp_path / "records.db", references=references)
    set_recipe(rig.inspector.store.engine, "acme", "golden", golden_recipe(golden_id))
    set_recipe(rig.inspector.store.engine, "acme", "other", golden_recipe(elsewhere_id, "other"))
    frames = [
        frame(1, good, pb.IMAGE_ENCODING_PNG, "golden"),
        frame(2, defect, pb.IMAGE_ENCODING_PNG, "golden"),
        with_reference(frame(3, good, pb.IMAGE_ENCODING_PNG, "other"), image=golden),
        with_reference(frame(4, defect, pb.IMAGE_ENCODING_PNG, "other"), reference_id=golden_id),
        with_reference(frame(5, good, pb.IMAGE_ENCODING_PNG, "other"), reference_id="e" * 64),
        with_reference(frame(6, good, pb.IMAGE_ENCODING_PNG, "other"), reference_id=foreign_id),
        frame(7, good, pb.IMAGE_ENCODING_PNG, "other"),
    ]
    old_frame = old_message("Frame").FromString(frame(8, good, pb.IMAGE_ENCODING_PNG, "golden").SerializeToString())
    old_request = old_message("InspectRequest")(frame=old_frame).SerializeToString()
    added_image = png(rephotograph(board(), rng))

    async def calls(stub: Any, channel: grpc.aio.Channel, metadata: Any) -> Any:
        results = await inspect_all(stub, frames, metadata)
        old_call = channel.unary_unary(INSPECT, response_deserializer=old_message("InspectResponse").FromString)
        old_result = (await old_call(old_request, metadata=metadata)).result  # bytes as an old client sends them
        image = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=golden)
        ids = [(await stub.AddReference(pb.AddReferenceRequest(image=image), metadata=metadata)).id for _ in "ab"]
        added = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=added_image)
        added_id = (await stub.AddReference(pb.AddReferenceRequest(image=added), metadata=metadata)).id
        by_id = with_reference(frame(9, good, pb.IMAGE_ENCODING_PNG, "other"), reference_id=added_id)
        by_added = await inspect_all(stub, [by_id], metadata)
        refusals = []
        for bad in (pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=b"not an image"),
                    pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=golden)):  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AddReference(pb.AddReferenceRequest(image=bad), metadata=metadata)
            refusals.append(refused.value.code())
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.AddReference(pb.AddReferenceRequest(image=image))
        refusals.append(anonymous.value.code())
        return results, old_result, ids, added_id, by_added[0], refusals

    results, old_result, ids, added_id, by_added, refusals = asyncio.run(session(rig, calls))
    recipe_good, recipe_defect, inline_good, by_id_defect, missing, foreign, unrelated = results
    assert recipe_good.verdict == pb.VERDICT_PASS and recipe_defect.verdict == pb.VERDICT_REVIEW
    assert list(recipe_defect.reasons) == ["1 anomaly region no detection explains"]
    # The frame's own golden sample replaces the recipe's ("other" names an unrelated board) and is judged alike.
    assert judged(inline_good)[:3] == judged(recipe_good)[:3] and inline_good.timings.alignment_ms > 0
    assert judged(by_id_defect)[:3] == judged(recipe_defect)[:3]
    assert unrelated.verdict == pb.VERDICT_REVIEW and unrelated.reasons[0].startswith("not aligned")
    for refused in (missing, foreign):  # never another tenant's image, never PASS
        assert refused.verdict == pb.VERDICT_ERROR, refused
        assert refused.error.code == pb.ERROR_CODE_REFERENCE_UNAVAILABLE
    # A client that predates per-frame references: its bytes are judged as the same frame always was.
    assert old_result.verdict == recipe_good.verdict and list(old_result.reasons) == list(recipe_good.reasons)
    assert (old_result.recipe.version, old_result.model.name) == (recipe_good.recipe.version, "deeppcb")
    # AddReference: the id 'lineqa references add' gives (the file's SHA-256), idempotent, under the caller's tenant.
    assert ids == [golden_id, golden_id] == [hashlib.sha256(golden).hexdigest()] * 2
    assert added_id == hashlib.sha256(added_image).hexdigest()
    assert {i for i, _ in references.ids("acme")} == {golden_id, elsewhere_id, added_id}
    assert added_id not in {i for i, _ in references.ids("globex")}
    assert by_added.verdict != pb.VERDICT_ERROR and by_added.timings.alignment_ms > 0, by_added.error
    assert refusals == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT,
                        grpc.StatusCode.UNAUTHENTICATED]  # fmt: skip


def test_a_reference_model_is_given_the_aligned_pair_and_never_a_frame_alone(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repository, _, triton = served
    references = ReferenceStore(tmp_path / "references")
    golden = board()
    golden_id = references.add("acme", png(golden))
    part = cv2.cvtColor(rephotograph(with_defect(board()), np.random.default_rng(5)), cv2.COLOR_GRAY2BGR)
    rig = make_rig(served, tmp_path / "records.db", references=references)
    recording = RecordingTriton(triton.endpoints.grpc_url)
    rig.inspector.triton = recording
    engine = rig.inspector.store.engine
    set_recipe(engine, "acme", "pairs", PAIRS_RECIPE)
    set_recipe(engine, "acme", "pairs-golden", golden_recipe(golden_id, "pairs-golden").replace("deeppcb", PAIRS))
    frames = [
        with_reference(frame(1, png(part), pb.IMAGE_ENCODING_PNG, "pairs"), image=png(golden)),
        frame(2, png(part), pb.IMAGE_ENCODING_PNG, "pairs"),
        with_reference(frame(3, png(board(seed=5)), pb.IMAGE_ENCODING_PNG, "pairs"), reference_id=golden_id),
        frame(4, png(part), pb.IMAGE_ENCODING_PNG, "pairs-golden"),
    ]

    async def calls(stub: Any, channel: grpc.aio.Channel, metadata: Any) -> list[pb.InspectionResult]:
        return await inspect_all(stub, frames, metadata)

    paired, alone, unaligned, from_recipe = asyncio.run(session(rig, calls))
    model = OnnxModel(repository.latest(PAIRS).model_file)
    assert model.spec.needs_reference
    expected_input = reference_input(align(part, golden))
    tensor, _ = preprocess([expected_input], model.spec)
    assert len(recording.sent) == 2  # frames 1 and 4; never the frame without a reference or the unaligned one
    np.testing.assert_array_equal(recording.sent[0], tensor)  # the encoded pair, letterboxed, is what Triton got
    assert not np.array_equal(recording.sent[0], preprocess([part], model.spec)[0])

    recipe = parse_recipe(PAIRS_RECIPE, "pairs")
    options = DecodeOptions(conf_threshold=recipe.min_confidence, iou_threshold=recipe.iou_threshold)
    local = decide(detect([expected_input], model.infer, model.spec, options)[0], model.spec.class_names, recipe)
    flagged = Detections(
        np.array([j.xyxy for j in local.flagged], np.float32).reshape(-1, 4),
        np.array([j.confidence for j in local.flagged], np.float32),
        np.array([j.class_id for j in local.flagged], np.int64),
    )
    assert paired.verdict == getattr(pb, f"VERDICT_{local.verdict.value}") and paired.model.name == PAIRS
    assert_same_detections(defects_of(paired), flagged, conf=recipe.min_confidence, where="the pair")
    assert paired.timings.alignment_ms > 0 and paired.timings.inference_ms > 0

    assert alone.verdict == pb.VERDICT_ERROR and alone.error.code == pb.ERROR_CODE_REFERENCE_REQUIRED
    assert "golden sample" in alone.error.message
    assert unaligned.verdict == pb.VERDICT_REVIEW and unaligned.timings.inference_ms == 0
    assert unaligned.reasons[-1].startswith("not aligned with the golden sample: ")
    assert from_recipe.verdict != pb.VERDICT_ERROR, from_recipe.error.message  # the recipe's golden sample serves
    np.testing.assert_array_equal(recording.sent[1], tensor)
