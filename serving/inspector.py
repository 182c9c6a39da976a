"""One frame in, one result out: validate, decode, letterbox, infer on Triton, decode, decide, record.

Every frame gets exactly one result. A frame that cannot be judged gets verdict ERROR with an error code and a
message a person can act on (never a server path or a traceback: those go to the log under the frame's record
id, :mod:`lineqa.serving.frame_errors`); nothing that fails along the way can turn into PASS (RELIABILITY.md 1).
A judged result is returned only after its record is committed (6); a frame seen before returns its stored
result marked as a replay (7). ERROR outcomes are not stored as the frame's record, so that a camera agent
replaying a frame after an outage gets it judged. A frame is judged with its tenant's recipe in force
(:mod:`lineqa.serving.recipes`), whose model the tenant must be allowed to use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timezone

import cv2
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from lineqa import __version__
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.database import DatabaseError
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.frame_errors import camera_message
from lineqa.serving.image_store import ImagePolicy, ImageStore, ImageStoreError
from lineqa.serving.metrics import GatewayMetrics
from lineqa.serving.model_repository import ModelRepository, ModelVersion
from lineqa.serving.recipes import RecipeBook
from lineqa.serving.records import InspectionRecord, RecordStore, RecordStoreError
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
from lineqa.vision.image import ImageEncoding, ImageLimits, decode_image
from lineqa.vision.recipe import Recipe
from lineqa.vision.tiling import merge_tile_results, tile_crops
from lineqa.vision.yolo_output import DecodeOptions


class InvalidFrameError(VisionError):
    """The frame lacks a field the gateway needs."""


# One table from exception type to wire error code; the first matching row wins (subclasses first).
ERROR_CODES: tuple[tuple[type[Exception], pb.ErrorCode], ...] = (
    (InvalidFrameError, pb.ERROR_CODE_INVALID_FRAME),
    (ImageTooLargeError, pb.ERROR_CODE_IMAGE_TOO_LARGE),
    (UnsupportedEncodingError, pb.ERROR_CODE_UNSUPPORTED_ENCODING),
    (CorruptImageError, pb.ERROR_CODE_INVALID_IMAGE),
    (RecipeError, pb.ERROR_CODE_UNKNOWN_RECIPE),
    (ModelTimeoutError, pb.ERROR_CODE_MODEL_TIMEOUT),
    (ModelUnavailableError, pb.ERROR_CODE_MODEL_UNAVAILABLE),
    (ModelRepositoryError, pb.ERROR_CODE_MODEL_UNAVAILABLE),
    (ModelOutputError, pb.ERROR_CODE_INVALID_MODEL_OUTPUT),
    (RecordStoreError, pb.ERROR_CODE_STORAGE_FAILURE),
    (DatabaseError, pb.ERROR_CODE_STORAGE_FAILURE),
    (ImageStoreError, pb.ERROR_CODE_STORAGE_FAILURE),
)

_ENCODINGS = {
    pb.IMAGE_ENCODING_JPEG: ImageEncoding.JPEG,
    pb.IMAGE_ENCODING_PNG: ImageEncoding.PNG,
    pb.IMAGE_ENCODING_RAW_GRAY8: ImageEncoding.RAW_GRAY8,
    pb.IMAGE_ENCODING_RAW_BGR8: ImageEncoding.RAW_BGR8,
}
_VERDICTS = {Verdict.PASS: pb.VERDICT_PASS, Verdict.FAIL: pb.VERDICT_FAIL, Verdict.REVIEW: pb.VERDICT_REVIEW}
_DISPOSITIONS = {Disposition.DEFECT: pb.DEFECT_DISPOSITION_DEFECT, Disposition.REVIEW: pb.DEFECT_DISPOSITION_REVIEW}


def error_code_for(exc: Exception) -> pb.ErrorCode:
    for kind, code in ERROR_CODES:
        if isinstance(exc, kind):
            return code
    return pb.ERROR_CODE_INTERNAL


@dataclass(frozen=True)
class InspectorSettings:
    limits: ImageLimits = field(default_factory=ImageLimits)
    triton_timeout_s: float = 2.0
    image_policy: ImagePolicy = ImagePolicy.FLAGGED


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _check_frame(frame: pb.Frame) -> None:
    identity = frame.identity
    required = {
        "camera_id": identity.camera_id,
        "line_id": identity.line_id,
        "recipe_id": frame.recipe_id,
        "image.data": frame.image.data,
    }
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
        repository: ModelRepository,
        recipes: RecipeBook,
        triton: TritonClient,
        store: RecordStore,
        settings: InspectorSettings | None = None,
        images: ImageStore | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.repository = repository
        self.recipes = recipes
        self.triton = triton
        self.store = store
        self.settings = settings or InspectorSettings()
        self.images = images
        self.metrics = metrics or GatewayMetrics()
        # What the embedded Triton serves, when it serves one version per model; None: Triton serves them all.
        self.served: Mapping[str, int] | None = None

    def resolve_version(self, name: str, pinned: int | None) -> ModelVersion:
        """The model version a frame is judged with: the recipe's pin, else the one on the line that Triton
        has loaded (during a switch to a newly promoted version, the old one until the new one is ready)."""
        if pinned is None and self.served is not None and name in self.served:
            pinned = self.served[name]
        return self.repository.version(name, pinned)

    async def inspect(self, tenant: str, frame: pb.Frame) -> pb.InspectionResult:
        self.metrics.in_flight.inc()
        try:
            result = await self._inspect(tenant, frame)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.observe(result)
        return result

    async def _inspect(self, tenant: str, frame: pb.Frame) -> pb.InspectionResult:
        started = time.perf_counter()
        result = pb.InspectionResult(frame=frame.identity, receive_time=_now())
        record_id = str(uuid.uuid4())  # the frame's record, or its failure's entry in the log
        try:
            _check_frame(frame)
            stored = await asyncio.to_thread(self.store.find, tenant, frame.identity.camera_id, frame.identity.sequence)
            if stored is not None:
                return self._replay(stored)
            await self._judge(tenant, frame, result, started, record_id)
        except Exception as exc:  # every failure becomes this frame's ERROR result, never a PASS
            result.ClearField("defects")
            del result.reasons[:]
            result.verdict = pb.VERDICT_ERROR
            result.record_id = ""
            code = error_code_for(exc)
            where = f"{tenant}/{frame.identity.camera_id}#{frame.identity.sequence}"
            result.error.CopyFrom(pb.InspectionError(code=code, message=camera_message(exc, code, record_id, where)))
        result.timings.total_ms = (time.perf_counter() - started) * 1e3
        return result

    def _replay(self, stored: InspectionRecord) -> pb.InspectionResult:
        result: pb.InspectionResult = pb.InspectionResult.FromString(stored.result)
        result.replay = True
        return result

    async def _judge(
        self, tenant: str, frame: pb.Frame, result: pb.InspectionResult, started: float, record_id: str
    ) -> None:
        recipe = await self.recipes.get(tenant, frame.recipe_id)
        version = self.resolve_version(recipe.model.name, recipe.model.version)
        spec = version.metadata.spec(version.name, max_batch=self.repository.settings(version.name).max_batch_size)
        recipe.check_classes(spec.class_names)
        image = await asyncio.to_thread(_decode, frame, self.settings.limits)
        decoded = time.perf_counter()
        detections = await self._detect(image, version, spec, recipe, result)
        after_inference = time.perf_counter()
        decision = decide(detections, spec.class_names, recipe)
        result.verdict = _VERDICTS[decision.verdict]
        result.defects.extend(_defects(decision))
        result.reasons.extend(decision.reasons)
        result.model.CopyFrom(pb.ModelRef(name=version.name, version=version.version))
        result.recipe.CopyFrom(pb.RecipeRef(id=recipe.id, version=recipe.version))
        result.record_id = record_id
        timings = result.timings
        timings.decode_ms = (decoded - started) * 1e3
        timings.decision_ms = (time.perf_counter() - after_inference) * 1e3
        persist_start = time.perf_counter()
        image_key = await asyncio.to_thread(self._keep_image, tenant, frame, image, decision.verdict)
        record = self._record(tenant, frame, result, decision, image_key)
        stored, existed = await asyncio.to_thread(self.store.commit, record)
        timings.persist_ms = (time.perf_counter() - persist_start) * 1e3
        if existed:  # another connection judged the same frame first: its result is the one
            result.CopyFrom(self._replay(stored))

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
            result.timings.preprocess_ms += (infer_start - prep_start) * 1e3
            result.timings.inference_ms += (post_start - infer_start) * 1e3
            result.timings.postprocess_ms += (time.perf_counter() - post_start) * 1e3
        if tiling is None or windows is None:
            return found[0]
        return merge_tile_results(found, windows, tiling)

    def _keep_image(self, tenant: str, frame: pb.Frame, image: np.ndarray, verdict: Verdict) -> str | None:
        """Store the part's image per policy; raw frames are kept as lossless PNG."""
        policy = self.settings.image_policy
        if self.images is None or policy is ImagePolicy.NONE:
            return None
        if policy is ImagePolicy.FLAGGED and verdict not in (Verdict.FAIL, Verdict.REVIEW):
            return None
        encoding = frame.image.encoding
        if encoding == pb.IMAGE_ENCODING_JPEG:
            return self.images.put(tenant, frame.image.data, "jpg")
        if encoding == pb.IMAGE_ENCODING_PNG:
            return self.images.put(tenant, frame.image.data, "png")
        return self.images.put(tenant, cv2.imencode(".png", image)[1].tobytes(), "png")

    def _record(
        self, tenant: str, frame: pb.Frame, result: pb.InspectionResult, decision: Decision, image_key: str | None
    ) -> InspectionRecord:
        identity = frame.identity
        capture = identity.capture_time.ToDatetime(timezone.utc) if identity.HasField("capture_time") else None
        defects = [
            {"class": j.class_name, "confidence": round(j.confidence, 6), "box": [round(v, 2) for v in j.xyxy],
             "area_px": j.area_px, "area_mm2": j.area_mm2, "disposition": j.disposition.value}
            for j in decision.flagged
        ]  # fmt: skip
        return InspectionRecord(
            record_id=result.record_id,
            tenant=tenant,
            line_id=identity.line_id,
            camera_id=identity.camera_id,
            sequence=identity.sequence,
            part_id=identity.part_id,
            capture_time=capture,
            receive_time=result.receive_time.ToDatetime(timezone.utc),
            model_name=result.model.name,
            model_version=result.model.version,
            recipe_id=result.recipe.id,
            recipe_version=result.recipe.version,
            image_sha256=hashlib.sha256(frame.image.data).hexdigest(),
            image_key=image_key,
            verdict=decision.verdict.value,
            error_code="",
            defects_json=json.dumps(defects),
            service_version=__version__,
            result=result.SerializeToString(),
        )
