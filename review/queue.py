"""The review queue: a tenant's FAIL and REVIEW parts, plus a steady sample of PASS parts (to spot escapes:
defects the model missed), filterable, newest first; and one part with everything a reviewer needs.

Reads the gateway's ``inspections`` table and never writes it: the original verdict stays as judged.
Decisions (:mod:`lineqa.review.decisions`) live in their own table and are joined in here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from lineqa.db import tenant_scope
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.review.clock import as_utc
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.review.schema import decisions
from lineqa.serving.schema import inspections

VERDICTS = ("FAIL", "REVIEW", "PASS")
STATUSES = ("pending", "reviewed", "all")
PAGE_SIZE = 50


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows. ``verdict`` None means FAIL, REVIEW and the PASS sample; ``model`` is
    ``name`` or ``name:version``; ``class_name`` keeps parts with at least one defect of that class."""

    line: str | None = None
    camera: str | None = None
    class_name: str | None = None
    verdict: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: str = "pending"
    page: int = 1

    def __post_init__(self) -> None:
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise BadInputError(f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}")
        if self.status not in STATUSES:
            raise BadInputError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")
        if self.page < 1:
            raise BadInputError("page numbers start at 1")
        if self.model is not None and ":" in self.model and not self.model.rpartition(":")[2].isdigit():
            raise BadInputError(f"model {self.model!r} is not name or name:version")


@dataclass(frozen=True)
class Defect:
    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    disposition: str

    def label(self) -> dict[str, Any]:
        """As the box editor and the decisions take it."""
        return {"class": self.class_name, "box": list(self.box)}


@dataclass(frozen=True)
class QueueRow:
    record_id: str
    part_id: str
    line_id: str
    camera_id: str
    receive_time: datetime
    verdict: str
    model: str
    defects: tuple[Defect, ...]
    decision: str | None  # the latest decision's kind, None while pending


@dataclass(frozen=True)
class DecisionView:
    decision_id: int
    kind: str
    boxes: list[dict[str, Any]]
    reason: str
    reviewer: str
    decided_at: datetime
    dataset: str | None
    sample: str | None


@dataclass(frozen=True)
class Part:
    """One inspected part with its traceability record, the model's defects and reasons, and decisions."""

    row: QueueRow
    sequence: int
    capture_time: datetime | None
    recipe_id: str
    recipe_version: str
    model_name: str
    model_version: int
    image_sha256: str
    image_key: str | None
    service_version: str
    reasons: tuple[str, ...]
    decisions: tuple[DecisionView, ...]

    def trace(self) -> dict[str, Any]:
        """The traceability record as shown (RELIABILITY.md 9)."""
        r = self.row
        return {
            "record id": r.record_id,
            "line / camera": f"{r.line_id} / {r.camera_id}",
            "sequence": self.sequence,
            "part id": r.part_id,
            "captured (UTC)": self.capture_time.isoformat() if self.capture_time else "—",
            "received (UTC)": r.receive_time.isoformat(),
            "model": f"{self.model_name} v{self.model_version}",
            "recipe": f"{self.recipe_id} ({self.recipe_version[:12]})",
            "image SHA-256": self.image_sha256,
            "service version": self.service_version,
        }


def pass_sample_prefixes(percent: float) -> list[str]:
    """Record ids (random UUIDs) starting with one of these two-hex-digit prefixes form the PASS sample: a
    stable ``percent`` of PASS parts, the same on every page load and every replica, chosen in SQL."""
    if not 0 <= percent <= 100:
        raise BadInputError(f"the PASS sample is a percentage, not {percent}")
    return [f"{i:02x}" for i in range(math.ceil(256 * percent / 100))]


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _defects(defects_json: str) -> tuple[Defect, ...]:
    return tuple(
        Defect(d["class"], float(d["confidence"]), tuple(float(v) for v in d["box"]), d["disposition"])  # type: ignore[arg-type]
        for d in json.loads(defects_json)
    )


def _model(row: Any) -> str:
    return f"{row.model_name}:{row.model_version}" if row.model_name else ""


def _decided(tenant: str) -> ColumnElement[bool]:
    return exists().where(decisions.c.tenant_id == tenant, decisions.c.record_id == inspections.c.record_id)


class ReviewQueue:
    def __init__(self, engine: Engine, pass_sample_percent: float = 5.0) -> None:
        self.engine = engine
        self.sample_prefixes = pass_sample_prefixes(pass_sample_percent)

    def _conditions(self, tenant: str, f: QueueFilter) -> list[ColumnElement[bool]]:
        c = inspections.c
        where: list[ColumnElement[bool]] = [c.tenant == tenant]
        if f.verdict is None:
            sampled = and_(c.verdict == "PASS", func.substr(c.record_id, 1, 2).in_(self.sample_prefixes))
            where.append(or_(c.verdict.in_(["FAIL", "REVIEW"]), sampled))
        else:
            where.append(c.verdict == f.verdict)
        if f.line:
            where.append(c.line_id == f.line)
        if f.camera:
            where.append(c.camera_id == f.camera)
        if f.model:
            name, _, version = f.model.partition(":")
            where.append(c.model_name == name)
            if version:
                where.append(c.model_version == int(version))
        if f.class_name:  # the gateway writes defects with json.dumps' default separators
            where.append(c.defects_json.like(f'%"class": "{_like_literal(f.class_name)}"%', escape="\\"))
        if f.since:
            where.append(c.receive_time >= f.since)
        if f.until:
            where.append(c.receive_time < f.until)
        if f.status == "pending":
            where.append(~_decided(tenant))
        elif f.status == "reviewed":
            where.append(_decided(tenant))
        return where

    def page(self, tenant: str, f: QueueFilter) -> tuple[list[QueueRow], int]:
        """One page of the queue, newest first, and how many parts match in all."""
        c = inspections.c
        where = self._conditions(tenant, f)
        columns = [
            c.record_id,
            c.part_id,
            c.line_id,
            c.camera_id,
            c.receive_time,
            c.verdict,
            c.model_name,
            c.model_version,
            c.defects_json,
        ]
        query = (
            select(*columns)
            .where(*where)
            .order_by(c.receive_time.desc(), c.record_id)
            .limit(PAGE_SIZE)
            .offset((f.page - 1) * PAGE_SIZE)
        )
        with tenant_scope(self.engine, tenant).connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(inspections).where(*where)).scalar_one())
            rows = conn.execute(query).all()
        latest = self._latest_kinds(tenant, [r.record_id for r in rows])
        return [self._row(r, latest.get(r.record_id)) for r in rows], total

    def choices(self, tenant: str) -> dict[str, list[str]]:
        """Values the filter form offers: the tenant's lines, cameras and models."""
        c = inspections.c
        out: dict[str, list[str]] = {}
        with tenant_scope(self.engine, tenant).connect() as conn:
            for key, column in (("line", c.line_id), ("camera", c.camera_id)):
                query = select(column).where(c.tenant == tenant).distinct().order_by(column)
                out[key] = list(conn.execute(query).scalars())
            models = conn.execute(
                select(c.model_name, c.model_version).where(c.tenant == tenant, c.model_name != "").distinct()
            ).all()
        out["model"] = sorted(f"{name}:{version}" for name, version in models)
        return out

    def part(self, tenant: str, record_id: str) -> Part:
        """One part of this tenant; another tenant's part is :class:`NotFoundError` like a missing one."""
        query = select(inspections).where(inspections.c.tenant == tenant, inspections.c.record_id == record_id)
        with tenant_scope(self.engine, tenant).connect() as conn:
            r = conn.execute(query).first()
        if r is None:
            raise NotFoundError(f"no part {record_id!r}")
        history = self.decisions(tenant, record_id)
        result = pb.InspectionResult.FromString(r.result)
        return Part(
            row=self._row(r, history[-1].kind if history else None),
            sequence=r.sequence,
            capture_time=as_utc(r.capture_time) if r.capture_time else None,
            recipe_id=r.recipe_id,
            recipe_version=r.recipe_version,
            model_name=r.model_name,
            model_version=r.model_version,
            image_sha256=r.image_sha256,
            image_key=r.image_key,
            service_version=r.service_version,
            reasons=tuple(result.reasons),
            decisions=tuple(history),
        )

    def decisions(self, tenant: str, record_id: str) -> list[DecisionView]:
        """A part's decisions, oldest first: the last one is in force."""
        d = decisions.c
        query = select(decisions).where(d.tenant_id == tenant, d.record_id == record_id).order_by(d.decision_id)
        with tenant_scope(self.engine, tenant).connect() as conn:
            return [
                DecisionView(
                    r.decision_id,
                    r.kind,
                    json.loads(r.boxes_json),
                    r.reason,
                    r.reviewer,
                    as_utc(r.decided_at),
                    r.dataset,
                    r.sample,
                )
                for r in conn.execute(query)
            ]

    def next_pending(self, tenant: str, after: str) -> str | None:
        """The newest pending part other than ``after``: where "decide and next" goes."""
        where = [*self._conditions(tenant, QueueFilter()), inspections.c.record_id != after]
        query = select(inspections.c.record_id).where(*where).order_by(inspections.c.receive_time.desc()).limit(1)
        with tenant_scope(self.engine, tenant).connect() as conn:
            found = conn.execute(query).scalar()
        return str(found) if found is not None else None

    def _latest_kinds(self, tenant: str, record_ids: list[str]) -> dict[str, str]:
        if not record_ids:
            return {}
        d = decisions.c
        latest = select(func.max(d.decision_id)).where(d.tenant_id == tenant, d.record_id.in_(record_ids))
        query = select(d.record_id, d.kind).where(d.decision_id.in_(latest.group_by(d.record_id)))
        with tenant_scope(self.engine, tenant).connect() as conn:
            return {record_id: kind for record_id, kind in conn.execute(query)}

    @staticmethod
    def _row(r: Any, decision: str | None) -> QueueRow:
        return QueueRow(
            r.record_id,
            r.part_id,
            r.line_id,
            r.camera_id,
            as_utc(r.receive_time),
            r.verdict,
            _model(r),
            _defects(r.defects_json),
            decision,
        )
