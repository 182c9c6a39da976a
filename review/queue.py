"""The review queue: a tenant's FAIL and REVIEW parts, plus a fixed sample of PASS parts (to spot escapes:
defects the model missed; :mod:`lineqa.serving.pass_sample`, the rule the gateway keeps their images by),
filterable, the most uncertain first (:mod:`lineqa.review.uncertainty`) or newest first; a part's place in
that order (previous, next); and one part with everything a reviewer needs.

Reads the gateway's ``inspections`` table and never writes it: the original verdict stays as judged.
Decisions (:mod:`lineqa.review.decisions`) live in their own table and are joined in here.
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, false, func, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from lineqa.db import tenant_scope
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.review.clock import as_utc
from lineqa.review.errors import NotFoundError
from lineqa.review.queue_filter import PartScope, QueueFilter
from lineqa.review.schema import decisions
from lineqa.review.uncertainty import ANOMALY_DISPOSITION, Opinions, RecipeLookup, doubt
from lineqa.serving.pass_sample import PassSample
from lineqa.serving.schema import inspections
from lineqa.vision.recipe import ClassRule

PAGE_SIZE = 50
RANK_LIMIT = 2000  # the uncertainty order ranks the newest this many matching parts (see the benchmark)


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
    doubt: float = 0.0  # how uncertain the verdict is (lineqa.review.uncertainty)
    reason: str = ""  # why, in words: the order's reason the queue shows

    @property
    def anomalies(self) -> int:
        """Anomaly regions (golden-sample findings no detection explains) among the defects."""
        return sum(d.disposition == ANOMALY_DISPOSITION for d in self.defects)


@dataclass(frozen=True)
class QueuePage:
    rows: list[QueueRow]
    total: int  # parts matching the filter
    ordered: int  # of which the order covers this many (the uncertainty order ranks the newest RANK_LIMIT)


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


def _within(scope: PartScope) -> ColumnElement[bool]:
    """The parts of an expert's scope (an empty scope matches none)."""
    if scope.whole:
        return true()
    c = inspections.c
    return or_(false(), c.line_id.in_(sorted(scope.lines)), c.recipe_id.in_(sorted(scope.recipes)))


def _sort_key(row: QueueRow) -> tuple[float, float, str]:
    """The uncertainty order: most doubt first, then newest, then by record id (a total order)."""
    return (-row.doubt, -row.receive_time.timestamp(), row.record_id)


_c = inspections.c
_ROW_COLUMNS = (_c.record_id, _c.part_id, _c.line_id, _c.camera_id, _c.receive_time, _c.verdict, _c.model_name,
                _c.model_version, _c.defects_json, _c.recipe_id, _c.recipe_version)  # fmt: skip
_NEWEST = (_c.receive_time.desc(), _c.record_id)


class ReviewQueue:
    def __init__(self, engine: Engine, pass_sample: PassSample, recipes: RecipeLookup) -> None:
        self.engine = engine
        self.sample = pass_sample
        self.recipes = recipes

    def _conditions(self, tenant: str, f: QueueFilter) -> list[ColumnElement[bool]]:
        c = inspections.c
        where: list[ColumnElement[bool]] = [c.tenant == tenant]
        if f.verdict is None:
            sampled = and_(c.verdict == "PASS", self.sample.where(c.sequence))
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
        if f.within is not None:
            where.append(_within(f.within))
        if f.status == "pending":
            where.append(~_decided(tenant))
        elif f.status == "reviewed":
            where.append(_decided(tenant))
        return where

    def page(self, tenant: str, f: QueueFilter) -> QueuePage:
        """One page of the queue in the filter's order, and how many parts match in all."""
        where = self._conditions(tenant, f)
        with tenant_scope(self.engine, tenant).connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(inspections).where(*where)).scalar_one())
        start = (f.page - 1) * PAGE_SIZE
        if f.order == "uncertain":
            ranked = self._ranked(tenant, where)
            rows = ranked[start : start + PAGE_SIZE]
            return QueuePage(self._with_decisions(tenant, rows), total, len(ranked))
        query = select(*_ROW_COLUMNS).where(*where).order_by(*_NEWEST).limit(PAGE_SIZE).offset(start)
        with tenant_scope(self.engine, tenant).connect() as conn:
            found = conn.execute(query).all()
        return QueuePage(self._with_decisions(tenant, self._rows(tenant, found)), total, total)

    def neighbours(self, tenant: str, f: QueueFilter, record_id: str) -> tuple[str | None, str | None]:
        """The parts before and after ``record_id`` in the filter's order. The part itself need not match
        the filter (a part just decided has left the pending queue): its place in the order is used."""
        here = self._one(tenant, record_id)
        where = self._conditions(tenant, f)
        if f.order == "uncertain":
            ranked = self._ranked(tenant, where)
            keys = [_sort_key(r) for r in ranked]
            key = _sort_key(here)
            before, after = bisect.bisect_left(keys, key), bisect.bisect_right(keys, key)
            previous = ranked[before - 1].record_id if before > 0 else None
            following = ranked[after].record_id if after < len(ranked) else None
            return previous, following
        c = inspections.c
        with tenant_scope(self.engine, tenant).connect() as conn:
            at = conn.execute(select(c.receive_time).where(c.record_id == record_id)).scalar_one()
            newer = or_(c.receive_time > at, and_(c.receive_time == at, c.record_id < record_id))
            older = or_(c.receive_time < at, and_(c.receive_time == at, c.record_id > record_id))
            previous = conn.execute(select(c.record_id).where(*where, newer)
                                    .order_by(c.receive_time, c.record_id.desc()).limit(1)).scalar()  # fmt: skip
            following = conn.execute(select(c.record_id).where(*where, older).order_by(*_NEWEST).limit(1)).scalar()
        return previous, following

    def after_decision(self, tenant: str, f: QueueFilter, record_id: str) -> str | None:
        """Where "decide, then the next part" goes: the next part in the order, else the first one left."""
        following = self.neighbours(tenant, f, record_id)[1]
        if following is not None:
            return following
        first = [r.record_id for r in self.page(tenant, replace(f, page=1)).rows if r.record_id != record_id]
        return first[0] if first else None

    def choices(self, tenant: str, within: PartScope | None = None) -> dict[str, list[str]]:
        """Values the filter form offers: the tenant's lines, cameras and models (of ``within``'s parts)."""
        c = inspections.c
        out: dict[str, list[str]] = {}
        mine = [c.tenant == tenant] + ([_within(within)] if within is not None else [])
        with tenant_scope(self.engine, tenant).connect() as conn:
            for key, column in (("line", c.line_id), ("camera", c.camera_id)):
                query = select(column).where(*mine).distinct().order_by(column)
                out[key] = list(conn.execute(query).scalars())
            models = conn.execute(
                select(c.model_name, c.model_version).where(*mine, c.model_name != "").distinct()
            ).all()
        out["model"] = sorted(f"{name}:{version}" for name, version in models)
        return out

    def part(self, tenant: str, record_id: str, within: PartScope | None = None) -> Part:
        """One part of this tenant; another tenant's part, or one outside ``within``, is :class:`NotFoundError`
        like a missing one."""
        query = select(inspections).where(inspections.c.tenant == tenant, inspections.c.record_id == record_id)
        with tenant_scope(self.engine, tenant).connect() as conn:
            r = conn.execute(query).first()
        if r is None or (within is not None and not within.allows(r.line_id, r.recipe_id)):
            raise NotFoundError(f"no part {record_id!r}")
        history = self.decisions(tenant, record_id)
        result = pb.InspectionResult.FromString(r.result)
        row = replace(self._rows(tenant, [r])[0], decision=history[-1].kind if history else None)
        return Part(
            row=row,
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
            return [_decision_view(r) for r in conn.execute(query)]

    def decision(self, tenant: str, decision_id: int, within: PartScope | None = None) -> tuple[DecisionView, str]:
        """One decision of this tenant (on a part of ``within``) and the part id (or record id) it is about: what a
        notice says."""
        d, c = decisions.c, inspections.c
        query = (
            select(decisions, c.part_id)
            .join(inspections, c.record_id == d.record_id)
            .where(d.tenant_id == tenant, c.tenant == tenant, d.decision_id == decision_id)
        )
        if within is not None:
            query = query.where(_within(within))
        with tenant_scope(self.engine, tenant).connect() as conn:
            r = conn.execute(query).first()
        if r is None:
            raise NotFoundError(f"no decision {decision_id}")
        return _decision_view(r), r.part_id or r.record_id

    def _one(self, tenant: str, record_id: str) -> QueueRow:
        query = select(*_ROW_COLUMNS).where(inspections.c.tenant == tenant, inspections.c.record_id == record_id)
        with tenant_scope(self.engine, tenant).connect() as conn:
            found = conn.execute(query).all()
        if not found:
            raise NotFoundError(f"no part {record_id!r}")
        return self._rows(tenant, found)[0]

    def _ranked(self, tenant: str, where: list[ColumnElement[bool]]) -> list[QueueRow]:
        """The newest :data:`RANK_LIMIT` matching parts in the uncertainty order."""
        query = select(*_ROW_COLUMNS).where(*where).order_by(*_NEWEST).limit(RANK_LIMIT)
        with tenant_scope(self.engine, tenant).connect() as conn:
            found = conn.execute(query).all()
        return sorted(self._rows(tenant, found), key=_sort_key)

    def _rows(self, tenant: str, found: Sequence[Any]) -> list[QueueRow]:
        """Queue rows with their doubt (see :mod:`lineqa.review.uncertainty`); decisions not yet joined."""
        opinions = self._opinions(tenant, {(r.part_id, r.camera_id) for r in found if r.part_id})
        rules: dict[tuple[str, str], Callable[[str], ClassRule] | None] = {}
        out = []
        for r in found:
            recipe_key = (r.recipe_id, r.recipe_version)
            if recipe_key not in rules:
                recipe = self.recipes(tenant, *recipe_key)
                rules[recipe_key] = functools.cache(recipe.rule_for) if recipe is not None else None
            defects = _defects(r.defects_json)
            judged = doubt(
                r.verdict,
                defects,
                rules[recipe_key],
                f"{r.recipe_id}@{r.recipe_version[:12]}",
                (r.model_name, r.model_version),
                opinions.get((r.part_id, r.camera_id), {}),
            )
            out.append(QueueRow(r.record_id, r.part_id, r.line_id, r.camera_id, as_utc(r.receive_time), r.verdict,
                                _model(r), defects, None, judged.score, judged.text()))  # fmt: skip
        return out

    def _opinions(self, tenant: str, views: set[tuple[str, str]]) -> dict[tuple[str, str], Opinions]:
        """For each (part id, camera) judged by more than one model version: the verdicts each version gave it
        (ERROR is no opinion). One query per 5000 parts; the database returns only the parts judged twice."""
        c = inspections.c
        judged = and_(c.tenant == tenant, c.verdict != "ERROR")
        seen: dict[tuple[str, str], dict[tuple[str, int], set[str]]] = {}
        parts = sorted({part for part, _ in views})
        for start in range(0, len(parts), 5000):  # within both databases' limits on bound parameters
            twice = (
                select(c.part_id)
                .where(judged, c.part_id.in_(parts[start : start + 5000]))
                .group_by(c.part_id, c.camera_id)
                .having(or_(func.count(c.model_name.distinct()) > 1, func.count(c.model_version.distinct()) > 1))
            )
            query = select(c.part_id, c.camera_id, c.model_name, c.model_version, c.verdict).where(
                judged, c.part_id.in_(twice)
            )
            with tenant_scope(self.engine, tenant).connect() as conn:
                for part, camera, name, version, verdict in conn.execute(query.distinct()):
                    if (part, camera) in views:
                        seen.setdefault((part, camera), {}).setdefault((name, version), set()).add(verdict)
        return {
            view: {model: frozenset(v) for model, v in by_model.items()}
            for view, by_model in seen.items()
            if len(by_model) > 1
        }

    def _with_decisions(self, tenant: str, rows: list[QueueRow]) -> list[QueueRow]:
        if not rows:
            return []
        d = decisions.c
        latest = select(func.max(d.decision_id)).where(d.tenant_id == tenant,
                                                       d.record_id.in_([r.record_id for r in rows]))  # fmt: skip
        query = select(d.record_id, d.kind).where(d.decision_id.in_(latest.group_by(d.record_id)))
        with tenant_scope(self.engine, tenant).connect() as conn:
            kinds = {record_id: kind for record_id, kind in conn.execute(query)}
        return [replace(r, decision=kinds.get(r.record_id)) for r in rows]


def _decision_view(r: Any) -> DecisionView:
    return DecisionView(r.decision_id, r.kind, json.loads(r.boxes_json), r.reason, r.reviewer, as_utc(r.decided_at),
                        r.dataset, r.sample)  # fmt: skip
