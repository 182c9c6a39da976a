"""One frame in, one result out: validate, decode, letterbox, infer on Triton, decode, decide, record.

Every frame gets exactly one result. A frame that cannot be judged gets verdict ERROR with an error code and a
message a person can act on (never a server path or a traceback: those go to the log under the record id,
:mod:`lineqa.serving.frame_errors`); nothing that fails along the way can turn into PASS (RELIABILITY.md 1). A
judged result is returned only after its record is committed (6). A frame seen before returns its stored
result marked as a replay, with its identity as sent, and only for the same image: the same (camera,
sequence) with another image is a SEQUENCE_CONFLICT, never another part's verdict (7). A frame is judged with
its tenant's recipe in force (:mod:`lineqa.serving.recipes`), whose model the tenant must be allowed to use.

An ERROR outcome is recorded as an attempt (its own table, its record id in the result), not as the frame's
record: the part's history is complete, and a camera agent sending the frame again after an outage gets it
judged. Every storage call (records, images) has a deadline on a thread pool of its own
(:mod:`lineqa.serving.storage_calls`).

A recipe with a golden sample (``reference:``) has each frame compared with it, off the event loop, by the
same vision step as ``lineqa predict`` (:mod:`lineqa.vision.golden`): a frame that cannot be aligned, or that
differs where no detection explains it, is REVIEW, and the differences are ``anomaly`` defects in the result
and the record. A golden sample the gateway cannot read makes the frame REFERENCE_UNAVAILABLE, never PASS.
A frame may bring its own golden sample, which then replaces the recipe's, and a model trained on
frame+reference pairs is given the aligned pair (:mod:`lineqa.serving.frame_reference`): without any golden
sample its frame is REFERENCE_REQUIRED, and a frame that cannot be aligned is REVIEW without being inferred.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from lineqa import __version__
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.admission import InferenceSlots
from lineqa.serving.database import DatabaseError
from lineqa.serving.errors import ModelRepositoryError, ServingError
from lineqa.serving.frame_errors import camera_message
from lineqa.serving.frame_reference import ReferenceRequiredError, frame_reference, require_reference
from lineqa.serving.image_store import ImagePolicy, ImageStore, ImageStoreError
from lineqa.serving.metrics import GatewayMetrics
from lineqa.serving.model_repository import ModelVersion
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.recipes import RecipeBook
from lineqa.serving.records import AttemptRecord, InspectionRecord, RecordStore, RecordStoreError
from lineqa.serving.references import ReferenceStore, ReferenceUnavailableError
from lineqa.serving.served_models import ServedModels
from lineqa.serving.storage_calls import StorageCalls
from lineqa.serving.triton_client import ModelTimeoutError, ModelUnavailableError, TritonClient
from lineqa.vision.decision import Decision, Disposition, Verdict, decide
from lineqa.vision.detections import Detections
from lineqa.vision.detector import ModelSpec, postprocess, preprocess
from lineqa.vision.errors import (
    CorruptImageError,
    ImageTooLargeError,
    ModelOutputError,
    RecipeError,
    UnsupportedEncodingError,
    VisionError,
)
from lineqa.vision.golden import Comparison, comparison, settle
from lineqa.vision.image import ImageEncoding, ImageLimits, decode_image
from lineqa.vision.recipe import Recipe
from lineqa.vision.tiling import merge_tile_results, tile_crops
from lineqa.vision.yolo_output import DecodeOptions

logger = logging.getLogger(__name__)


class InvalidFrameError(VisionError):
    """The frame lacks a field the gateway needs."""


class SequenceConflictError(ServingError):
    """A frame's (camera, sequence) was judged before, with another image."""


# One table from exception type to wire error code; the first matching row wins (subclasses first).
ERROR_CODES: tuple[tuple[type[Exception], pb.ErrorCode], ...] = (
    (InvalidFrameError, pb.ERROR_CODE_INVALID_FRAME),
    (ImageTooLargeError, pb.ERROR_CODE_IMAGE_TOO_LARGE),
    (UnsupportedEncodingError, pb.ERROR_CODE_UNSUPPORTED_ENCODING),
    (CorruptImageError, pb.ERROR_CODE_INVALID_IMAGE),
    (RecipeError, pb.ERROR_CODE_UNKNOWN_RECIPE),
    (ReferenceUnavailableError, pb.ERROR_CODE_REFERENCE_UNAVAILABLE),
    (ReferenceRequiredError, pb.ERROR_CODE_REFERENCE_REQUIRED),
    (ModelTimeoutError, pb.ERROR_CODE_MODEL_TIMEOUT),
    (ModelUnavailableError, pb.ERROR_CODE_MODEL_UNAVAILABLE),
    (ModelRepositoryError, pb.ERROR_CODE_MODEL_UNAVAILABLE),
    (ModelOutputError, pb.ERROR_CODE_INVALID_MODEL_OUTPUT),
    (RecordStoreError, pb.ERROR_CODE_STORAGE_FAILURE),
    (DatabaseError, pb.ERROR_CODE_STORAGE_FAILURE),
    (ImageStoreError, pb.ERROR_CODE_STORAGE_FAILURE),
    (DatabaseError, pb.ERROR_CODE_STORAGE_FAILURE),
    (SequenceConflictError, pb.ERROR_CODE_SEQUENCE_CONFLICT),
)

_ENCODINGS = {
    pb.IMAGE_ENCODING_JPEG: ImageEncoding.JPEG,
    pb.IMAGE_ENCODING_PNG: ImageEncoding.PNG,
    pb.IMAGE_ENCODING_RAW_GRAY8: ImageEncoding.RAW_GRAY8,
    pb.IMAGE_ENCODING_RAW_BGR8: ImageEncoding.RAW_BGR8,
}
_VERDICTS = {Verdict.PASS: pb.VERDICT_PASS, Verdict.FAIL: pb.VERDICT_FAIL, Verdict.REVIEW: pb.VERDICT_REVIEW}
_DISPOSITIONS = {
    Disposition.DEFECT: pb.DEFECT_DISPOSITION_DEFECT,
    Disposition.REVIEW: pb.DEFECT_DISPOSITION_REVIEW,
    Disposition.ANOMALY: pb.DEFECT_DISPOSITION_ANOMALY,
}


def error_code_for(exc: Exception) -> pb.ErrorCode:
    for kind, code in ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return pb.ERROR_CODE_INTERNAL


@dataclass(frozen=True)
class InspectorSettings:
    limits: ImageLimits = field(default_factory=ImageLimits)
    triton_timeout_s: float = 2.0
    image_policy: ImagePolicy = ImagePolicy.FLAGGED_AND_SAMPLE
    pass_sample: PassSample = field(default_factory=PassSample)


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def identity_problem(identity: pb.FrameIdentity) -> str | None:
    """What the frame's identity lacks, or None when it is complete. Without a sequence number two parts
    would share the idempotency key and the second would get the first one's verdict."""
    required = {"camera_id": identity.camera_id, "line_id": identity.line_id, "sequence": identity.sequence}
    missing = [name for name, value in required.items() if not value]
    if not missing:
        return None
    return (f"the frame's identity has no {', '.join(missing)}: every frame names its camera and line and "
            "carries the camera's sequence number (1, 2, 3, ...), the key its verdict is kept under")  # fmt: skip


def _check_frame(frame: pb.Frame) -> None:
    problem = identity_problem(frame.identity)
    if problem:
        raise InvalidFrameError(problem)
    required = {"recipe_id": frame.recipe_id, "image.data": frame.image.data}
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise InvalidFrameError(f"the frame has no {', '.join(missing)}")
    if frame.image.encoding not in _ENCODINGS:
        raise UnsupportedEncodingError("the frame's image encoding is unspecified; send JPEG, PNG or raw gray8/BGR8")


def _decode(frame: pb.Frame, limits: ImageLimits) -> np.ndarray:
    image = frame.image
    return decode_image(
        image.data,
        _ENCODINGS[image.encoding],
        limits=limits,
        width=image.width,
        height=image.height,
        stride=image.stride,
    )


def _defects(decision: Decision) -> list[pb.Defect]:
    out = []
    for judged in decision.flagged:
        defect = pb.Defect(
            class_name=judged.class_name,
            class_id=judged.class_id,
            confidence=judged.confidence,
            box=pb.BoundingBox(x1=judged.xyxy[0], y1=judged.xyxy[1], x2=judged.xyxy[2], y2=judged.xyxy[3]),
            area_px=judged.area_px,
            disposition=_DISPOSITIONS[judged.disposition],
        )
        if judged.area_mm2 is not None:
            defect.area_mm2 = judged.area_mm2
        out.append(defect)
    return out


class Inspector:
    """The per-frame pipeline. ``inspect`` never raises for a bad frame or a failing dependency."""

    def __init__(
        self,
        served: ServedModels,
        recipes: RecipeBook,
        triton: TritonClient,
        store: RecordStore,
        settings: InspectorSettings | None = None,
        images: ImageStore | None = None,
        metrics: GatewayMetrics | None = None,
        slots: InferenceSlots | None = None,
        storage: StorageCalls | None = None,
        references: ReferenceStore | None = None,
    ) -> None:
        self.served = served
        self.recipes = recipes
        self.triton = triton
        self.store = store
        self.settings = settings or InspectorSettings()
        self.images = images
        self.metrics = metrics or GatewayMetrics()
        self.slots = slots or InferenceSlots(4, self.settings.triton_timeout_s)
        self.storage = storage or StorageCalls()
        self.references = references
        self.metrics.inference_limit.set_function(lambda: self.slots.limit)
        self._probe_id = f"{socket.gethostname()}-{os.getpid()}"

    async def ready(self) -> bool:
        """Whether a frame can be judged now: every model version on the line is ready on Triton, and the
        record store and the image store take writes within their deadline (for health; never raises)."""
        on_line = list(self.served.lineup.on_line.values())
        if not on_line:
            return False
        try:
            if not await self.storage.run("the health write", self.store.writable, self._probe_id):
                return False
            if self.images is not None and not await self.storage.run("the image probe", self.images.writable):
                return False
        except DatabaseError as exc:
            logger.warning("health: %s", exc)
            return False
        checks = [self.triton.is_ready(version.name, version.version) for version in on_line]
        return all(await asyncio.gather(*checks))

    def refuse(self, tenant: str, frame: pb.Frame, message: str) -> pb.InspectionResult:
        """The INVALID_FRAME result of a frame whose identity is incomplete: answered, counted and logged, not
        recorded (it has no identity to be recorded under)."""
        result = pb.InspectionResult(frame=frame.identity, receive_time=_now(), verdict=pb.VERDICT_ERROR)
        result.error.CopyFrom(pb.InspectionError(code=pb.ERROR_CODE_INVALID_FRAME, message=message))
        logger.warning("tenant %s: frame refused: %s", tenant, message)
        self.metrics.observe(tenant, result)
        return result

    async def inspect(self, tenant: str, frame: pb.Frame) -> pb.InspectionResult:
        self.metrics.in_flight.inc()
        try:
            result = await self._inspect(tenant, frame)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.observe(tenant, result)
        return result

    async def _inspect(self, tenant: str, frame: pb.Frame) -> pb.InspectionResult:
        started = time.perf_counter()
        result = pb.InspectionResult(frame=frame.identity, receive_time=_now())
        image_sha256 = hashlib.sha256(frame.image.data).hexdigest()
        try:
            _check_frame(frame)
            identity = frame.identity
            stored = await self.storage.run(
                "reading the record store", self.store.find, tenant, identity.camera_id, identity.sequence
            )
            if stored is not None:
                return _replay(stored, frame, image_sha256)
            await self._judge(tenant, frame, result, started, image_sha256)
        except Exception as exc:  # every failure becomes this frame's ERROR result, never a PASS
            await self._fail(tenant, frame, result, exc, image_sha256)
        result.timings.total_ms = (time.perf_counter() - started) * 1e3
        return result

    async def _fail(
        self, tenant: str, frame: pb.Frame, result: pb.InspectionResult, exc: Exception, image_sha256: str
    ) -> None:
        """Make ``result`` the frame's ERROR result, logged and recorded as an attempt under its record id."""
        code = error_code_for(exc)
        attempt_id = str(uuid.uuid4())
        identity = frame.identity
        where = f"{tenant}/{identity.camera_id}#{identity.sequence}"
        message = camera_message(exc, code, attempt_id, where)
        result.ClearField("defects")
        del result.reasons[:]
        result.verdict = pb.VERDICT_ERROR
        result.record_id = ""
        result.error.CopyFrom(pb.InspectionError(code=code, message=message))
        if identity_problem(identity):
            return
        attempt = AttemptRecord(
            **_frame_fields(attempt_id, tenant, frame, result),
            recipe_id=frame.recipe_id,
            image_sha256=image_sha256,
            error_code=pb.ErrorCode.Name(code),
            error_message=message,
            service_version=__version__,
        )
        try:
            await self.storage.run("recording the attempt", self.store.record_attempt, attempt)
        except DatabaseError as store_failure:
            logger.warning("%s: the attempt could not be recorded: %s", where, store_failure)
            return
        result.record_id = attempt_id

    async def _judge(
        self, tenant: str, frame: pb.Frame, result: pb.InspectionResult, started: float, image_sha256: str
    ) -> None:
        recipe = await self.recipes.get(tenant, frame.recipe_id)
        image = await asyncio.to_thread(_decode, frame, self.settings.limits)
        reference = await asyncio.to_thread(
            frame_reference, tenant, frame, recipe, self.references, self.settings.limits
        )
        decoded = time.perf_counter()
        # The version is chosen and held as one step: it stays loaded until this frame's inference is done.
        async with self.served.lease(recipe.model.name, recipe.model.version) as version:
            spec = version.metadata.spec(version.name, max_batch=self.served.lineup.max_batch(version.name))
            recipe.check_classes(spec.class_names)
            require_reference(spec, reference, recipe)
            compared = await self._compare(image, reference, recipe, spec, result)
            model_image = image if compared is None else compared.model_image
            if model_image is None:  # a misplaced pair is no input the model was trained on: REVIEW, not inferred
                detections = Detections.empty()
            else:
                detections = await self._detect(model_image, version, spec, recipe, result)
        after_inference = time.perf_counter()
        decision = settle(decide(detections, spec.class_names, recipe), recipe, compared)
        result.verdict = _VERDICTS[decision.verdict]
        result.defects.extend(_defects(decision))
        result.reasons.extend(decision.reasons)
        result.model.CopyFrom(pb.ModelRef(name=version.name, version=version.version))
        result.recipe.CopyFrom(pb.RecipeRef(id=recipe.id, version=recipe.version))
        result.record_id = str(uuid.uuid4())
        timings = result.timings
        timings.decode_ms = (decoded - started) * 1e3
        timings.decision_ms = (time.perf_counter() - after_inference) * 1e3
        persist_start = time.perf_counter()
        image_key = await self.storage.run(
            "storing the image", self._keep_image, tenant, frame, image, decision.verdict
        )
        record = self._record(tenant, frame, result, decision, image_key, image_sha256)
        stored, existed = await self.storage.run("committing the record", self.store.commit, record)
        timings.persist_ms = (time.perf_counter() - persist_start) * 1e3
        if existed:  # another connection judged the same frame first: its result is the one
            result.CopyFrom(_replay(stored, frame, image_sha256))

    async def _compare(
        self, image: np.ndarray, reference: np.ndarray | None, recipe: Recipe, spec: ModelSpec,
        result: pb.InspectionResult,
    ) -> Comparison | None:  # fmt: skip
        """The frame against its golden sample (:func:`lineqa.vision.golden.comparison`), on a worker thread:
        alignment takes tens of milliseconds and the event loop serves every other camera meanwhile."""
        if reference is None:
            return None
        began = time.perf_counter()
        compared = await asyncio.to_thread(comparison, image, reference, recipe, spec)
        result.timings.alignment_ms = (time.perf_counter() - began) * 1e3
        return compared

    async def _detect(
        self, image: np.ndarray, version: ModelVersion, spec: ModelSpec, recipe: Recipe, result: pb.InspectionResult
    ) -> Detections:
        options = DecodeOptions(conf_threshold=recipe.min_confidence, iou_threshold=recipe.iou_threshold)
        tiling = recipe.tiling.options() if recipe.tiling else None
        crops, windows = tile_crops(image, tiling) if tiling else ([image], None)
        found: list[Detections] = []
        for start in range(0, len(crops), spec.max_batch):
            prep_start = time.perf_counter()
            tensor, boxes = await asyncio.to_thread(preprocess, crops[start : start + spec.max_batch], spec)
            prepared = time.perf_counter()
            async with self.slots.slot() as waited_s:
                infer_start = time.perf_counter()
                raw = await self.triton.infer(
                    version.name,
                    version.version,
                    tensor,
                    input_name=version.metadata.input_name,
                    output_name=version.metadata.output_name,
                    timeout_s=self.settings.triton_timeout_s,
                )
            post_start = time.perf_counter()
            found += postprocess(raw, boxes, spec, options)
            result.timings.preprocess_ms += (prepared - prep_start) * 1e3
            result.timings.queue_ms += waited_s * 1e3
            result.timings.inference_ms += (post_start - infer_start) * 1e3
            result.timings.postprocess_ms += (time.perf_counter() - post_start) * 1e3
        if tiling is None or windows is None:
            return found[0]
        return merge_tile_results(found, windows, tiling)

    def _keep_image(self, tenant: str, frame: pb.Frame, image: np.ndarray, verdict: Verdict) -> str | None:
        """Store the part's image per policy; raw frames are kept as lossless PNG."""
        keeps = self.settings.image_policy.keeps(verdict.value, frame.identity.sequence, self.settings.pass_sample)
        if self.images is None or not keeps:
            return None
        encoding = frame.image.encoding
        if encoding == pb.IMAGE_ENCODING_JPEG:
            return self.images.put(tenant, frame.image.data, "jpg")
        if encoding == pb.IMAGE_ENCODING_PNG:
            return self.images.put(tenant, frame.image.data, "png")
        return self.images.put(tenant, cv2.imencode(".png", image)[1].tobytes(), "png")

    def _record(
        self,
        tenant: str,
        frame: pb.Frame,
        result: pb.InspectionResult,
        decision: Decision,
        image_key: str | None,
        image_sha256: str,
    ) -> InspectionRecord:
        defects = [
            {"class": j.class_name, "confidence": round(j.confidence, 6), "box": [round(v, 2) for v in j.xyxy],
             "area_px": j.area_px, "area_mm2": j.area_mm2, "disposition": j.disposition.value}
            for j in decision.flagged
        ]  # fmt: skip
        return InspectionRecord(
            **_frame_fields(result.record_id, tenant, frame, result),
            model_name=result.model.name,
            model_version=result.model.version,
            recipe_id=result.recipe.id,
            recipe_version=result.recipe.version,
            image_sha256=image_sha256,
            image_key=image_key,
            verdict=decision.verdict.value,
            error_code="",
            defects_json=json.dumps(defects),
            service_version=__version__,
            result=result.SerializeToString(),
        )


def _frame_fields(record_id: str, tenant: str, frame: pb.Frame, result: pb.InspectionResult) -> dict[str, Any]:
    """The :class:`~lineqa.serving.records.FrameRecord` fields of a frame (a record's or an attempt's)."""
    identity = frame.identity
    return {
        "record_id": record_id,
        "tenant": tenant,
        "line_id": identity.line_id,
        "camera_id": identity.camera_id,
        "sequence": identity.sequence,
        "part_id": identity.part_id,
        "capture_time": identity.capture_time.ToDatetime(timezone.utc) if identity.HasField("capture_time") else None,
        "receive_time": result.receive_time.ToDatetime(timezone.utc),
    }


def _replay(stored: InspectionRecord, frame: pb.Frame, image_sha256: str) -> pb.InspectionResult:
    """The stored result of a frame seen before, marked as a replay and echoing the identity as sent; only for
    the same image (the record keeps its SHA-256)."""
    identity = frame.identity
    if stored.image_sha256 != image_sha256:
        raise SequenceConflictError(
            f"camera {identity.camera_id!r} sequence {identity.sequence} was judged before with another image "
            f"(record {stored.record_id}); a new part needs a new sequence number"
        )
    result: pb.InspectionResult = pb.InspectionResult.FromString(stored.result)
    result.frame.CopyFrom(identity)
    result.replay = True
    return result
