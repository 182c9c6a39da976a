"""A plant sending its flagged parts, their images and its QA decisions up to the hub.

Incremental: each kind (parts, decisions) has a cursor, the newest receive time (decision time) sent; a scan
looks from a safety window before it (``overlap``: a record committed late, after a newer one was sent, is still
found) and skips what the hub has acknowledged (``fl_plant_sent``). Only what the tenant's data policy allows is
selected, and only the images it allows are offered; the policy is asked for before every upload.

Resumable and idempotent: a batch is marked sent only after the hub acknowledged it and every image it asked
for was put. A cut before that sends the batch again; the hub recognises every part and decision (counted as
known, nothing changes) and asks again only for the images it still lacks.

The first upload of a plant sends what the policy allows from its whole history, a batch at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import grpc
from sqlalchemy import Connection, Engine, String, and_, cast, exists, select

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.db import as_utc, tenant_scope
from lineqa.fleet.plant_link import PlantLink
from lineqa.fleet.plant_models import UNREACHABLE, hub_error
from lineqa.fleet.policy import FLAGGED, DataPolicy
from lineqa.fleet.schema import plant_cursors, plant_sent
from lineqa.fleet.wire import DecisionUp, PartUp, decision_to_wire, part_to_wire, policy_from_wire
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.review.schema import decisions
from lineqa.serving.schema import inspections

logger = logging.getLogger(__name__)
PART, DECISION = "part", "decision"
OVERLAP = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class UploadReport:
    policy: str = ""  # the policy it was sent under, in words
    new_parts: int = 0
    new_decisions: int = 0
    known: int = 0  # sent again, already on the hub
    images: int = 0
    refused: int = 0

    def __add__(self, other: UploadReport) -> UploadReport:
        return UploadReport(other.policy or self.policy, self.new_parts + other.new_parts,
                            self.new_decisions + other.new_decisions, self.known + other.known,
                            self.images + other.images, self.refused + other.refused)  # fmt: skip


@dataclass(frozen=True)
class _Batch:
    parts: tuple[PartUp, ...]
    decisions: tuple[DecisionUp, ...]
    image_keys: dict[str, str]  # sha256 -> the plant's image key, for the images offered
    flagged_until: datetime | None  # the newest receive time of the flagged parts in it
    decided_until: datetime | None


@dataclass
class Uploader:
    """Sends one plant's tenant's parts and decisions (synchronous)."""

    link: PlantLink
    engine: Engine
    store: ContentStore
    stub: pb_grpc.HubServiceStub
    batch_size: int = 100
    overlap: timedelta = OVERLAP
    timeout_s: float = 60.0

    @property
    def tenant(self) -> str:
        return self.link.tenant

    def drain(self) -> UploadReport:
        """Send batches until nothing the policy allows is left; HubUnreachableError on a cut (what the hub
        acknowledged stays sent, the rest goes next time)."""
        try:
            policy = policy_from_wire(self.stub.GetDataPolicy(pb.GetDataPolicyRequest(), timeout=self.timeout_s))
        except grpc.RpcError as exc:
            raise hub_error(exc, "asking for the data policy") from exc
        total = UploadReport(policy=policy.describe())
        if not policy.version:
            return total
        with self._lock():
            while True:
                batch = self._next(policy)
                if not (batch.parts or batch.decisions):
                    return total
                total += self._send(batch)
                if max(len(batch.parts), len(batch.decisions)) < self.batch_size:
                    return total

    def _send(self, batch: _Batch) -> UploadReport:
        request = pb.PushPartsRequest(parts=[part_to_wire(p) for p in batch.parts],
                                      decisions=[decision_to_wire(d) for d in batch.decisions])  # fmt: skip
        try:
            answer = self.stub.PushParts(request, timeout=self.timeout_s)
            images = sum(self._put_image(sha, batch.image_keys.get(sha)) for sha in answer.wanted_images)
        except grpc.RpcError as exc:
            raise hub_error(exc, "sending parts") from exc
        for refused in answer.refused:
            logger.warning("the hub refused %s: %s (not sent again)", refused.item, refused.reason)
        self._acknowledge(batch)
        return UploadReport("", answer.new_parts, answer.new_decisions, answer.known, images, len(answer.refused))

    def _put_image(self, sha256: str, key: str | None) -> int:
        if key is None:
            logger.warning("the hub asked for image %s..., which this batch did not offer", sha256[:12])
            return 0
        try:
            data = self.store.get(self.tenant, key)
        except ContentStoreError as exc:
            logger.warning("image %s cannot be sent: %s", key, exc)
            return 0
        try:
            self.stub.PutImage(pb.PutImageRequest(sha256=sha256, ext=key.rsplit(".", 1)[1], data=data),
                               timeout=self.timeout_s)  # fmt: skip
        except grpc.RpcError as exc:
            if exc.code() in UNREACHABLE:
                raise
            # refused for good (too large, no longer allowed): sending it again would stop every later part
            logger.warning("the hub refused image %s (%s: %s); not sent again", key, exc.code().name, exc.details())
            return 0
        return 1

    def _next(self, policy: DataPolicy) -> _Batch:
        with tenant_scope(self.engine, self.tenant).connect() as conn:
            cursors = self._cursors(conn)
            chosen = self._decisions(conn, cursors.get(DECISION, _EPOCH)) if policy.decisions else []
            flagged = self._flagged(conn, cursors.get(PART, _EPOCH)) if policy.flagged_parts else []
            decided_ids = {row["record_id"] for row in chosen} - {row["record_id"] for row in flagged}
            rows = flagged + self._records(conn, decided_ids)
        keys: dict[str, str] = {}
        parts = []
        for row in rows:
            key = row["image_key"]
            offered = bool(key) and policy.allows_image(row["verdict"]) and self._has(key)
            if offered:
                keys[row["image_sha256"]] = key
            parts.append(_part(row, key.rsplit(".", 1)[1] if offered else None))
        return _Batch(
            tuple(parts), tuple(_decision(row) for row in chosen), keys,
            max((as_utc(r["receive_time"]) for r in flagged), default=None),
            max((as_utc(r["decided_at"]) for r in chosen), default=None),
        )  # fmt: skip

    def _unsent(self, kind: str, item: Any) -> Any:
        s = plant_sent.c
        return ~exists().where(and_(s.tenant_id == self.tenant, s.kind == kind, s.item_id == item))

    def _flagged(self, conn: Connection, cursor: datetime) -> list[dict[str, Any]]:
        c = inspections.c
        query = (
            select(inspections)
            .where(c.tenant == self.tenant, c.verdict.in_(sorted(FLAGGED)), c.receive_time >= cursor - self.overlap,
                   self._unsent(PART, c.record_id))
            .order_by(c.receive_time, c.record_id)
            .limit(self.batch_size)
        )  # fmt: skip
        return [dict(row) for row in conn.execute(query).mappings()]

    def _records(self, conn: Connection, record_ids: set[str]) -> list[dict[str, Any]]:
        """The records of decided parts that the hub does not have yet."""
        c = inspections.c
        query = select(inspections).where(c.tenant == self.tenant, c.record_id.in_(sorted(record_ids)),
                                          self._unsent(PART, c.record_id))  # fmt: skip
        return [dict(row) for row in conn.execute(query).mappings()]

    def _decisions(self, conn: Connection, cursor: datetime) -> list[dict[str, Any]]:
        d = decisions.c
        query = (
            select(decisions)
            .where(d.tenant_id == self.tenant, d.decided_at >= cursor - self.overlap,
                   self._unsent(DECISION, cast(d.decision_id, String)))
            .order_by(d.decided_at, d.decision_id)
            .limit(self.batch_size)
        )  # fmt: skip
        return [dict(row) for row in conn.execute(query).mappings()]

    def _has(self, key: str) -> bool:
        try:
            self.store.path(self.tenant, key)
        except ContentStoreError:
            return False
        return True

    def _cursors(self, conn: Connection) -> dict[str, datetime]:
        k = plant_cursors.c
        rows = conn.execute(select(k.kind, k.scanned_to).where(k.tenant_id == self.tenant))
        return {kind: as_utc(at) for kind, at in rows}

    def _acknowledge(self, batch: _Batch) -> None:
        """Mark the batch sent and move the cursors, in one transaction."""
        now = datetime.now(timezone.utc)
        sent = [{"tenant_id": self.tenant, "kind": PART, "item_id": p.record_id, "sent_at": now} for p in batch.parts]
        sent += [{"tenant_id": self.tenant, "kind": DECISION, "item_id": str(d.decision_id), "sent_at": now}
                 for d in batch.decisions]  # fmt: skip
        with tenant_scope(self.engine, self.tenant).begin() as conn:
            conn.execute(plant_sent.insert(), sent)
            cursors = self._cursors(conn)
            for kind, until in ((PART, batch.flagged_until), (DECISION, batch.decided_until)):
                if until is None or (kind in cursors and cursors[kind] >= until):
                    continue
                k = plant_cursors.c
                if kind in cursors:
                    conn.execute(plant_cursors.update().where(k.tenant_id == self.tenant, k.kind == kind)
                                 .values(scanned_to=until))  # fmt: skip
                else:
                    conn.execute(plant_cursors.insert().values(tenant_id=self.tenant, kind=kind, scanned_to=until))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One uploader at a time per home (a scheduled ``plant sync`` and an on-demand ``--once``)."""
        with (self.link.folder / "upload.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _part(row: dict[str, Any], image_ext: str | None) -> PartUp:
    """A gateway record as it goes up: the tenant is the plant's; no result bytes, no image key of the plant's."""
    fields = {name: row[name] for name in PartUp.__dataclass_fields__ if name != "image_ext"}
    capture = row["capture_time"]
    return PartUp(**{**fields, "part_id": row["part_id"] or "", "sequence": int(row["sequence"]),
                     "model_version": int(row["model_version"]), "receive_time": as_utc(row["receive_time"]),
                     "capture_time": as_utc(capture) if capture else None, "image_ext": image_ext})  # fmt: skip


def _decision(row: dict[str, Any]) -> DecisionUp:
    return DecisionUp(int(row["decision_id"]), row["record_id"], row["kind"], row["boxes_json"], row["reviewer"],
                      as_utc(row["decided_at"]), row["reason"])  # fmt: skip
