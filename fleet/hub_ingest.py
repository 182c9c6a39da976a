"""Parts, their images and QA decisions arriving at the hub from a plant, into the tenant's dataset.

Idempotent by construction: a part is keyed by (tenant, plant, the plant's record id), a decision by (tenant,
plant, the plant's decision id), an image by its SHA-256 under the tenant's prefix of the content store. A part
or decision received again with the same content is counted as known and changes nothing; one with other
content under a known key is refused (a plant never changes a record). Everything is checked against the
tenant's policy on arrival, whatever the plant filtered.

A part with its image becomes the sample ``<plant>/<record id>.<ext>`` of the policy's dataset, grouped by part
id: unlabelled (``missing``) until a QA decision arrives, then labelled as the plant's reviewer decided (the
latest decision in force: confirmed or corrected boxes, or a background image for a false alarm). The samples
are recomputed from what the hub holds each time, so the order in which parts, images and decisions arrive,
or how often, makes no difference to the dataset.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.model import Annotation, ImportedDataset, LabelledImage
from lineqa.db import as_utc, tenant_scope
from lineqa.fleet.plants import Plant
from lineqa.fleet.policy import DataPolicy, PolicyStore
from lineqa.fleet.schema import decisions, parts
from lineqa.fleet.wire import DecisionUp, PartUp, WireError, parse_boxes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushOutcome:
    new_parts: int = 0
    new_decisions: int = 0
    known: int = 0
    wanted_images: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (item, reason)


@dataclass
class _Tally:
    new_parts: int = 0
    new_decisions: int = 0
    known: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def _same(row: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """A stored row and one received again: equal in every field the plant sent (times compared in UTC)."""
    for key, value in values.items():
        if key in ("received_at", "image_ext"):
            continue
        stored = row[key]
        if isinstance(value, datetime) and stored is not None:
            stored, value = as_utc(stored), as_utc(value)
        if stored != value:
            return False
    return True


class HubIngest:
    """Takes in what one plant sends (synchronous: the hub service calls it from worker threads)."""

    def __init__(self, engine: Engine, store: ContentStore, policies: PolicyStore) -> None:
        self.engine = engine
        self.store = store
        self.policies = policies

    def push(self, plant: Plant, sent_parts: Iterable[PartUp], sent_decisions: Iterable[DecisionUp]) -> PushOutcome:
        """Store what is new and allowed; say which images the hub wants."""
        tenant, policy = plant.tenant_id, self.policies.in_force(plant.tenant_id)
        sent_parts, sent_decisions = list(sent_parts), list(sent_decisions)
        tally = _Tally()
        now = datetime.now(timezone.utc)
        record_ids = {p.record_id for p in sent_parts} | {d.record_id for d in sent_decisions}
        with tenant_scope(self.engine, tenant).begin() as conn:
            held = self._parts(conn, plant, record_ids)
            decided = {d.record_id for d in sent_decisions} | self._decided(conn, plant, record_ids)
            for part in sent_parts:
                self._take_part(conn, plant, policy, part, part.record_id in decided, held, tally, now)
            self._take_decisions(conn, plant, policy, sent_decisions, held, tally, now)
        self.refresh(plant, record_ids)
        wanted = sorted({
            row["image_sha256"] for row in held.values()
            if row["image_ext"] and row["record_id"] in record_ids and policy.allows_image(row["verdict"])
            and not self._has_image(tenant, row["image_sha256"], row["image_ext"])
        })  # fmt: skip
        for item, reason in tally.refused:
            logger.warning("plant %s (%s): refused %s: %s", plant.plant_id, tenant, item, reason)
        return PushOutcome(tally.new_parts, tally.new_decisions, tally.known, tuple(wanted), tuple(tally.refused))

    def _take_part(self, conn: Connection, plant: Plant, policy: DataPolicy, part: PartUp, decided: bool,
                   held: dict[str, Mapping[str, Any]], tally: _Tally, now: datetime) -> None:  # fmt: skip
        values = {
            "tenant_id": plant.tenant_id, "plant_id": plant.plant_id, "record_id": part.record_id,
            "line_id": part.line_id, "camera_id": part.camera_id, "sequence": part.sequence, "part_id": part.part_id,
            "capture_time": part.capture_time, "receive_time": part.receive_time, "model_name": part.model_name,
            "model_version": part.model_version, "recipe_id": part.recipe_id, "recipe_version": part.recipe_version,
            "verdict": part.verdict, "defects_json": part.defects_json, "image_sha256": part.image_sha256,
            "image_ext": part.image_ext if policy.allows_image(part.verdict) else None, "received_at": now,
        }  # fmt: skip
        before = held.get(part.record_id)
        if before is not None:
            if _same(before, values):
                tally.known += 1
            else:
                tally.refused.append((part.record_id, "differs from the part received before under this record id"))
            return
        if not policy.allows_part(part.verdict, decided):
            tally.refused.append((part.record_id, f"the tenant's data policy does not allow it ({policy.describe()})"))
            return
        conn.execute(parts.insert().values(**values))
        held[part.record_id] = values
        tally.new_parts += 1

    def _take_decisions(self, conn: Connection, plant: Plant, policy: DataPolicy, sent: list[DecisionUp],
                        held: Mapping[str, Mapping[str, Any]], tally: _Tally, now: datetime) -> None:  # fmt: skip
        d = decisions.c
        ids = [decision.decision_id for decision in sent]
        query = select(decisions).where(d.tenant_id == plant.tenant_id, d.plant_id == plant.plant_id,
                                        d.decision_id.in_(ids))  # fmt: skip
        known: dict[int, Mapping[str, Any]] = {r["decision_id"]: dict(r) for r in conn.execute(query).mappings()}
        for decision in sent:
            item = f"decision:{decision.decision_id}"
            values = {
                "tenant_id": plant.tenant_id, "plant_id": plant.plant_id, "decision_id": decision.decision_id,
                "record_id": decision.record_id, "kind": decision.kind, "boxes_json": decision.boxes_json,
                "reviewer": decision.reviewer, "decided_at": decision.decided_at, "reason": decision.reason,
                "received_at": now,
            }  # fmt: skip
            if decision.decision_id in known:
                if _same(known[decision.decision_id], values):
                    tally.known += 1
                else:
                    tally.refused.append((item, "differs from the decision received before under this id"))
            elif not policy.decisions:
                tally.refused.append((item, f"the tenant's data policy does not allow it ({policy.describe()})"))
            elif decision.record_id not in held:
                tally.refused.append((item, f"no part {decision.record_id} from this plant: send it with its decision"))
            else:
                conn.execute(decisions.insert().values(**values))
                known[decision.decision_id] = values
                tally.new_decisions += 1

    def put_image(self, plant: Plant, sha256: str, ext: str, data: bytes) -> int:
        """Store an image the hub asked for; returns the dataset samples it completed. WireError for an image
        whose bytes are not its hash, or that no part of this plant offers under the policy in force."""
        if hashlib.sha256(data).hexdigest() != sha256:
            raise WireError("the image's bytes do not have the SHA-256 it was sent with")
        policy = self.policies.in_force(plant.tenant_id)
        p = parts.c
        query = select(p.record_id, p.verdict).where(
            p.tenant_id == plant.tenant_id, p.plant_id == plant.plant_id, p.image_sha256 == sha256, p.image_ext == ext
        )
        with tenant_scope(self.engine, plant.tenant_id).connect() as conn:
            offered = [record_id for record_id, verdict in conn.execute(query) if policy.allows_image(verdict)]
        if not offered:
            raise WireError(f"no part of plant {plant.plant_id} offers image {sha256[:12]}... as {ext} under the "
                            "tenant's data policy")  # fmt: skip
        self.store.put(plant.tenant_id, data, ext)
        return self.refresh(plant, offered)

    def refresh(self, plant: Plant, record_ids: Collection[str]) -> int:
        """Make the dataset samples of these parts what the hub holds: each part whose image is here, labelled by
        its latest decision (unlabelled without one). Returns how many samples it wrote or found unchanged."""
        tenant = plant.tenant_id
        policy = self.policies.in_force(tenant)
        with tenant_scope(self.engine, tenant).connect() as conn:
            rows = [r for r in self._parts(conn, plant, record_ids).values() if r["image_ext"]]
            latest = self._latest_decisions(conn, plant, [r["record_id"] for r in rows])
        samples = []
        for row in rows:
            path = self._image_path(tenant, row["image_sha256"], row["image_ext"])
            if path is None:
                continue
            decision = latest.get(row["record_id"])
            boxes = parse_boxes(decision["boxes_json"]) if decision else ()
            annotation = Annotation.BOXES if boxes else Annotation.BACKGROUND
            if decision is None:
                annotation = Annotation.MISSING  # not looked at by QA: the model's boxes are no labels
            name = f"{plant.plant_id}/{row['record_id']}.{row['image_ext']}"
            samples.append(LabelledImage(name, path, boxes, annotation, group=row["part_id"] or row["record_id"]))
        if not samples:
            return 0
        source = f"plant:{plant.plant_id}"
        imported = ImportedDataset(source, Path(plant.plant_id), [], samples)
        report = Catalog(self.engine, self.store, tenant).import_images(policy.dataset, imported, skip_bad=True,
                                                                         source=source)  # fmt: skip
        for problem in report.skipped:
            logger.warning("plant %s (%s): a sample was not added to %s: %s", plant.plant_id, tenant, policy.dataset,
                           problem)  # fmt: skip
        return report.added + report.updated + report.unchanged

    @staticmethod
    def _parts(conn: Connection, plant: Plant, record_ids: Collection[str]) -> dict[str, Mapping[str, Any]]:
        p = parts.c
        query = select(parts).where(p.tenant_id == plant.tenant_id, p.plant_id == plant.plant_id,
                                    p.record_id.in_(list(record_ids)))  # fmt: skip
        return {row["record_id"]: dict(row) for row in conn.execute(query).mappings()}

    @staticmethod
    def _decided(conn: Connection, plant: Plant, record_ids: Collection[str]) -> set[str]:
        d = decisions.c
        query = select(d.record_id).where(d.tenant_id == plant.tenant_id, d.plant_id == plant.plant_id,
                                          d.record_id.in_(list(record_ids)))  # fmt: skip
        return set(conn.execute(query).scalars())

    @staticmethod
    def _latest_decisions(conn: Connection, plant: Plant, record_ids: list[str]) -> dict[str, Mapping[str, Any]]:
        d = decisions.c
        query = (
            select(decisions)
            .where(d.tenant_id == plant.tenant_id, d.plant_id == plant.plant_id, d.record_id.in_(record_ids))
            .order_by(d.decided_at, d.decision_id)
        )
        return {row["record_id"]: dict(row) for row in conn.execute(query).mappings()}  # the last one wins

    def _image_path(self, tenant: str, sha256: str, ext: str) -> Path | None:
        try:
            return self.store.path(tenant, f"{tenant}/{sha256[:2]}/{sha256}.{ext}")
        except ContentStoreError:
            return None

    def _has_image(self, tenant: str, sha256: str, ext: str) -> bool:
        return self._image_path(tenant, sha256, ext) is not None
