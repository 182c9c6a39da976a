"""Parts, decisions and policies between their wire form (``lineqa.fleet.v1``) and the frozen dataclasses the
two ends work with. What comes off the wire is checked here, once: the hub takes nothing from a plant on trust
but its identity."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from lineqa.content_store import EXTENSIONS
from lineqa.datasets.model import Box
from lineqa.fleet.errors import FleetError
from lineqa.fleet.policy import VERDICTS, DataPolicy
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DECISION_KINDS = frozenset({"confirm", "false_alarm", "correct"})
MAX_BOXES = 500
# The longest each text may be: what the hub's tables hold (the gateway's and review app's own limits).
_LIMITS = {"line_id": 128, "camera_id": 128, "part_id": 256, "model_name": 128, "recipe_id": 128,
           "recipe_version": 64, "reviewer": 128}  # fmt: skip


class WireError(FleetError):
    """A part or decision from a plant that the hub cannot take as it is."""


@dataclass(frozen=True)
class PartUp:
    """An inspected part as a plant's gateway recorded it, what it was and how it was judged; ``image_ext`` set
    when its image is offered."""

    record_id: str
    verdict: str
    line_id: str
    camera_id: str
    part_id: str
    sequence: int
    receive_time: datetime
    capture_time: datetime | None
    recipe_id: str
    recipe_version: str
    model_name: str
    model_version: int
    defects_json: str
    image_sha256: str
    image_ext: str | None


@dataclass(frozen=True)
class DecisionUp:
    decision_id: int
    record_id: str
    kind: str
    boxes_json: str
    reviewer: str
    decided_at: datetime
    reason: str

    def boxes(self) -> tuple[Box, ...]:
        return parse_boxes(self.boxes_json)


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(timezone.utc))
    return stamp


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=timezone.utc)


def part_to_wire(part: PartUp) -> pb.Part:
    return pb.Part(
        record_id=part.record_id, line_id=part.line_id, camera_id=part.camera_id, sequence=part.sequence,
        part_id=part.part_id, capture_time=_timestamp(part.capture_time), receive_time=_timestamp(part.receive_time),
        model_name=part.model_name, model_version=part.model_version, recipe_id=part.recipe_id,
        recipe_version=part.recipe_version, verdict=part.verdict, defects_json=part.defects_json,
        image_sha256=part.image_sha256, image_ext=part.image_ext or "",
    )  # fmt: skip


def _check_lengths(message: pb.Part | pb.Decision) -> None:
    for field, limit in _LIMITS.items():
        if field in message.DESCRIPTOR.fields_by_name and len(getattr(message, field)) > limit:
            raise WireError(f"{field} is longer than {limit} characters")


def part_from_wire(message: pb.Part) -> PartUp:
    _check_lengths(message)
    if not _RECORD_ID.match(message.record_id):
        raise WireError(f"record id {message.record_id!r} is not a record id")
    if message.verdict not in VERDICTS:
        raise WireError(f"verdict {message.verdict!r} is not PASS, FAIL or REVIEW")
    if message.image_sha256 and not _SHA256.match(message.image_sha256):
        raise WireError("image_sha256 is not a SHA-256")
    if message.image_ext and (message.image_ext not in EXTENSIONS or not message.image_sha256):
        raise WireError(f"an image offered as {message.image_ext!r} needs a known type and its SHA-256")
    if not message.HasField("receive_time"):
        raise WireError("a part needs its receive time")
    try:
        json.loads(message.defects_json or "[]")
    except ValueError:
        raise WireError("defects_json is not JSON") from None
    capture = _time(message.capture_time) if message.HasField("capture_time") else None
    return PartUp(
        record_id=message.record_id, verdict=message.verdict, line_id=message.line_id, camera_id=message.camera_id,
        part_id=message.part_id, sequence=message.sequence, receive_time=_time(message.receive_time),
        capture_time=capture, recipe_id=message.recipe_id, recipe_version=message.recipe_version,
        model_name=message.model_name, model_version=message.model_version,
        defects_json=message.defects_json or "[]", image_sha256=message.image_sha256,
        image_ext=message.image_ext or None,
    )  # fmt: skip


def decision_to_wire(decision: DecisionUp) -> pb.Decision:
    return pb.Decision(decision_id=decision.decision_id, record_id=decision.record_id, kind=decision.kind,
                       boxes_json=decision.boxes_json, reviewer=decision.reviewer,
                       decided_at=_timestamp(decision.decided_at), reason=decision.reason)  # fmt: skip


def decision_from_wire(message: pb.Decision) -> DecisionUp:
    _check_lengths(message)
    if message.kind not in DECISION_KINDS:
        raise WireError(f"decision kind {message.kind!r} is not confirm, false_alarm or correct")
    if not _RECORD_ID.match(message.record_id) or message.decision_id < 1:
        raise WireError("a decision needs its id and its part's record id")
    decision = DecisionUp(message.decision_id, message.record_id, message.kind, message.boxes_json,
                          message.reviewer, _time(message.decided_at), message.reason)  # fmt: skip
    decision.boxes()  # refused here, not later when it is applied
    return decision


def parse_boxes(text: str) -> tuple[Box, ...]:
    """A decision's labels as the review app records them: ``[{"class": name, "box": [x1, y1, x2, y2]}]``."""
    try:
        data = json.loads(text)
    except ValueError:
        raise WireError("boxes_json is not JSON") from None
    if not isinstance(data, list) or len(data) > MAX_BOXES:
        raise WireError(f"boxes_json must be a list of at most {MAX_BOXES} boxes")
    boxes = []
    for item in data:
        coords = item.get("box") if isinstance(item, dict) else None
        name = item.get("class") if isinstance(item, dict) else None
        if not (isinstance(name, str) and name and isinstance(coords, list) and len(coords) == 4):
            raise WireError('a box is {"class": name, "box": [x1, y1, x2, y2]}')
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in coords):
            raise WireError(f"box {coords!r} needs four finite numbers")
        boxes.append(Box(name, *(float(v) for v in coords)))
    return tuple(boxes)


def policy_to_wire(policy: DataPolicy) -> pb.DataPolicy:
    return pb.DataPolicy(version=policy.version, flagged_parts=policy.flagged_parts,
                         image_verdicts=sorted(policy.image_verdicts), decisions=policy.decisions,
                         dataset=policy.dataset)  # fmt: skip


def policy_from_wire(message: pb.DataPolicy) -> DataPolicy:
    if not message.version:
        return DataPolicy()
    return DataPolicy(message.flagged_parts, frozenset(message.image_verdicts), message.decisions, message.dataset,
                      message.version)  # fmt: skip
