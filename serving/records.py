"""Traceability records: one row per inspection, committed before the verdict is sent (RELIABILITY.md 6-9).

SQLite by default (WAL journal, ``synchronous=FULL``, a busy timeout), any SQLAlchemy URL otherwise
(PostgreSQL in production, same table). Ingest is idempotent on (tenant, camera, sequence): the unique key
decides, so two connections racing with the same frame store one row and both get the original result.
The result sent to the camera is stored as its serialized message, so a replay returns it byte for byte.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serving.errors import ServingError

logger = logging.getLogger(__name__)

metadata = MetaData()
inspections = Table(
    "inspections",
    metadata,
    Column("record_id", String(36), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("line_id", String(128), nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("part_id", String(256), nullable=False, default=""),
    Column("capture_time", DateTime(timezone=True)),
    Column("receive_time", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False, default=""),
    Column("model_version", Integer, nullable=False, default=0),
    Column("recipe_id", String(128), nullable=False, default=""),
    Column("recipe_version", String(64), nullable=False, default=""),
    Column("image_sha256", String(64), nullable=False, default=""),
    Column("image_key", String(512)),
    Column("verdict", String(8), nullable=False),
    Column("error_code", String(48), nullable=False, default=""),
    Column("defects_json", Text, nullable=False, default="[]"),
    Column("service_version", String(64), nullable=False),
    Column("result", LargeBinary, nullable=False),
    UniqueConstraint("tenant", "camera_id", "sequence", name="uq_inspections_frame"),
)


class RecordStoreError(ServingError):
    """The record store could not commit or read; the frame's result must not be sent as judged."""


@dataclass(frozen=True)
class InspectionRecord:
    record_id: str
    tenant: str
    line_id: str
    camera_id: str
    sequence: int
    part_id: str
    capture_time: datetime | None
    receive_time: datetime
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


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class RecordStore:
    """Synchronous store (call it from a worker thread in async code); safe across threads and processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot open the record store {self.engine.url!r}: {exc}") from exc

    def find(self, tenant: str, camera_id: str, sequence: int) -> InspectionRecord | None:
        """The stored record of a frame identity, if it was seen before."""
        query = select(inspections).where(
            inspections.c.tenant == tenant, inspections.c.camera_id == camera_id, inspections.c.sequence == sequence
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).mappings().first()
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot read the record store: {exc}") from exc
        return InspectionRecord(**row) if row else None

    def commit(self, record: InspectionRecord) -> tuple[InspectionRecord, bool]:
        """Store a record durably; return (the stored record, True if it was already there)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(inspections.insert().values(**record.__dict__))
            return record, False
        except IntegrityError:
            existing = self.find(record.tenant, record.camera_id, record.sequence)
            if existing is None:  # the conflict was on something else: a real error
                raise RecordStoreError(f"record {record.record_id} conflicts with a stored one") from None
            return existing, True
        except SQLAlchemyError as exc:
            raise RecordStoreError(f"cannot commit record {record.record_id}: {exc}") from exc

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(inspections)).scalar_one())

    def writable(self) -> bool:
        """For health: can a write transaction start now?"""
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self.engine.dispose()
