"""Traceability records: one row per inspection, committed before the verdict is sent (RELIABILITY.md 6-9).

Stored in the gateway database (:mod:`lineqa.serving.database`: SQLite with WAL and ``synchronous=FULL`` by
default, PostgreSQL by URL). Ingest is idempotent on (tenant, camera, sequence): the unique key decides,
so two connections racing with the same frame store one row and both get the original result.
The result sent to the camera is stored as its serialized message, so a replay returns it byte for byte.
Records are append-only (the database refuses UPDATE and DELETE), and every read and write is scoped to its
tenant (:func:`lineqa.db.tenant_scope`: row-level security on PostgreSQL).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lineqa.db import tenant_scope
from lineqa.serving.database import DatabaseError
from lineqa.serving.schema import health_probes, inspection_attempts, inspections

logger = logging.getLogger(__name__)


class RecordStoreError(DatabaseError):
    """The record store could not commit or read; the frame's result must not be sent as judged."""


@dataclass(frozen=True)
class FrameRecord:
    """Which frame a record is about, and when it came (a verdict record and an attempt both have it)."""

    record_id: str
    tenant: str
    line_id: str
    camera_id: str
    sequence: int
    part_id: str
    capture_time: datetime | None
    receive_time: datetime


@dataclass(frozen=True)
class InspectionRecord(FrameRecord):
    model_name: str
    model_version: int
    recipe_id: str
    recipe_version: str
    image_sha256: str
    image_key: str | None
    verdict: str
    error_code: str
    defects_json: str
    service_version: str
    result: bytes


@dataclass(frozen=True)
class AttemptRecord(FrameRecord):
    """A frame that could not be judged: which one, when, and why (the ERROR result names ``record_id``)."""

    recipe_id: str
    image_sha256: str
    error_code: str
    error_message: str
    service_version: str


class RecordStore:
    """Synchronous store (call it from a worker thread in async code); safe across threads and processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, tenant: str, camera_id: str, sequence: int) -> InspectionRecord | None:
        """The stored record of a frame identity, if it was seen before."""
        query = select(inspections).where(
            inspections.c.tenant == tenant, inspections.c.camera_id == camera_id, inspections.c.sequence == sequence
        )
        try:
            with tenant_scope(self.engine, tenant).connect() as conn:
                row = conn.execute(query).mappings().first()
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot read the record store: {exc}") from exc
        return InspectionRecord(**row) if row else None

    def commit(self, record: InspectionRecord) -> tuple[InspectionRecord, bool]:
        """Store a record durably; return (the stored record, True if it was already there)."""
        try:
            with tenant_scope(self.engine, record.tenant).begin() as conn:
                conn.execute(inspections.insert().values(**record.__dict__))
            return record, False
        except IntegrityError:
            existing = self.find(record.tenant, record.camera_id, record.sequence)
            if existing is None:  # the conflict was on something else: a real error
                raise RecordStoreError(f"record {record.record_id} conflicts with a stored one") from None
            return existing, True
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot commit record {record.record_id}: {exc}") from exc

    def record_attempt(self, attempt: AttemptRecord) -> None:
        """Store one ERROR outcome durably (append only: a frame's attempts are its history)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(inspection_attempts.insert().values(**attempt.__dict__))
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot record attempt {attempt.record_id}: {exc}") from exc

    def attempts(self, tenant: str, camera_id: str, sequence: int) -> list[AttemptRecord]:
        """The ERROR attempts of one frame identity, oldest first."""
        query = (
            select(inspection_attempts)
            .where(
                inspection_attempts.c.tenant == tenant,
                inspection_attempts.c.camera_id == camera_id,
                inspection_attempts.c.sequence == sequence,
            )
            .order_by(inspection_attempts.c.receive_time)
        )
        with self.engine.connect() as conn:
            return [AttemptRecord(**row) for row in conn.execute(query).mappings()]

    def count(self) -> int:
        """Records of every tenant (the platform's view: on PostgreSQL only the tables' owner sees them all)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(inspections)).scalar_one())

    def writable(self, probe_id: str) -> bool:
        """For health: does a write commit now? It really writes (one row per gateway, ``probe_id``), so a full
        disk or a read-only database says no, where a transaction that writes nothing would still succeed."""
        now = datetime.now(timezone.utc)
        try:
            with self.engine.begin() as conn:
                updated = conn.execute(
                    health_probes.update().where(health_probes.c.probe_id == probe_id).values(checked_at=now)
                ).rowcount
                if not updated:
                    conn.execute(health_probes.insert().values(probe_id=probe_id, checked_at=now))
            return True
        except SQLAlchemyError as exc:
            logger.warning("the record store does not take writes: %s", exc)
            return False

    def close(self) -> None:
        self.engine.dispose()
