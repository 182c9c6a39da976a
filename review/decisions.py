"""QA decisions on inspected parts, and closing the loop into the tenant's working dataset.

A decision is one of: **confirm** (the model was right: its flagged boxes become the labels, or for a PASS
part, a confirmed good part), **false alarm** (no defect: a background image, a hard negative the next
model learns from) or **correct** (the reviewer's boxes replace the model's). Decisions are appended, never
changed: a part reviewed twice has two decisions, the later in force, and each goes into the audit trail
with the labels it replaced. Saving boxes equal to those in force is no correction: on a part nobody has
decided yet it is a confirm (the model's boxes, accepted), on a decided part nothing is appended and the
decision in force stays. The gateway's record of the part, with its original verdict, is not touched.

The part's image (kept by the gateway under the tenant's prefix of the shared content store) becomes the
sample ``parts/<record id>.<ext>`` of the tenant's working dataset, grouped by part id, so the next
``Catalog.snapshot`` and training run include it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Engine

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.datasets.catalog import Catalog
from lineqa.datasets.errors import DatasetNotFoundError
from lineqa.datasets.model import Annotation, Box, LabelledImage
from lineqa.db import tenant_scope
from lineqa.review import audit
from lineqa.review.boxes import boxes_json
from lineqa.review.clock import now
from lineqa.review.errors import BadInputError
from lineqa.review.queue import Part, ReviewQueue
from lineqa.review.schema import decisions
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_repository import ModelRepository

logger = logging.getLogger(__name__)


class DecisionKind(str, Enum):
    CONFIRM = "confirm"
    FALSE_ALARM = "false_alarm"
    CORRECT = "correct"


@dataclass(frozen=True)
class DecisionOutcome:
    decision_id: int  # the decision recorded, or the one that stays in force when nothing was recorded
    kind: DecisionKind
    labels: tuple[Box, ...]
    sample: str | None  # the working dataset's sample, None when the gateway kept no image of the part
    recorded: bool = True  # False: the boxes equalled those in force, nothing was appended


def model_labels(part: Part) -> tuple[Box, ...]:
    return tuple(Box(d.class_name, *d.box) for d in part.row.defects)


def labels_in_force(part: Part) -> tuple[Box, ...]:
    """The part's labels now: its latest decision's boxes, or the model's while no one has decided."""
    if part.decisions:
        return tuple(Box(b["class"], *b["box"]) for b in part.decisions[-1].boxes)
    return model_labels(part)


def same_labels(a: tuple[Box, ...], b: tuple[Box, ...], tolerance_px: float = 0.01) -> bool:
    """The same boxes in any order, corners within ``tolerance_px`` (the editor posts 1/100 px)."""
    if len(a) != len(b):
        return False

    def corners(box: Box) -> tuple[float, float, float, float]:
        return (box.x1, box.y1, box.x2, box.y2)

    def key(box: Box) -> tuple[str, float, float, float, float]:
        return (box.class_name, *corners(box))

    return all(
        p.class_name == q.class_name
        and all(abs(u - v) <= tolerance_px for u, v in zip(corners(p), corners(q), strict=True))
        for p, q in zip(sorted(a, key=key), sorted(b, key=key), strict=True)
    )


class Decisions:
    def __init__(
        self,
        engine: Engine,
        store: ContentStore,
        queue: ReviewQueue,
        dataset: str,
        models: ModelRepository | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.queue = queue
        self.dataset = dataset
        self.models = models

    def classes(self, tenant: str, part: Part) -> list[str]:
        """Classes a reviewer may draw: the judging model's, the working dataset's, and the part's own."""
        found: list[str] = []
        if self.models is not None and part.model_name:
            try:
                found += self.models.version(part.model_name, part.model_version).metadata.class_names
            except ModelRepositoryError:
                logger.info(
                    "model %s v%s is not in the repository: classes from the data", part.model_name, part.model_version
                )
        with contextlib.suppress(DatasetNotFoundError):  # no part reviewed yet
            found += Catalog(self.engine, self.store, tenant).classes(self.dataset)
        found += [d.class_name for d in part.row.defects]
        return list(dict.fromkeys(found))

    def decide(
        self, tenant: str, record_id: str, kind: DecisionKind, corrected: tuple[Box, ...] | None, reason: str, by: str
    ) -> DecisionOutcome:
        part = self.queue.part(tenant, record_id)
        if kind is DecisionKind.CORRECT:
            if corrected is None:
                raise BadInputError("a correction needs the corrected boxes")
            if same_labels(corrected, labels_in_force(part)):  # saving with no change is not a correction
                if part.decisions:  # the decision in force stays; nothing to append
                    current = part.decisions[-1]
                    return DecisionOutcome(current.decision_id, DecisionKind(current.kind), corrected,
                                           current.sample, recorded=False)  # fmt: skip
                kind = DecisionKind.CONFIRM  # the model's boxes, accepted as they are
            labels = corrected
        elif corrected:
            raise BadInputError(f"a {kind.value} decision takes no boxes; use 'correct' to change them")
        else:
            labels = model_labels(part) if kind is DecisionKind.CONFIRM else ()
        previous: dict[str, Any] = (
            {"decision": part.decisions[-1].kind, "labels": part.decisions[-1].boxes}
            if part.decisions
            else {"verdict": part.row.verdict, "labels": boxes_json(model_labels(part))}
        )
        # The sample first: should the decision's commit fail, deciding again replaces the sample, and the
        # audit trail never names a sample that is not there.
        sample = self._to_dataset(tenant, part, labels)
        new = {
            "decision": kind.value,
            "labels": boxes_json(labels),
            "dataset": self.dataset if sample else None,
            "sample": sample,
        }
        with tenant_scope(self.engine, tenant).begin() as conn:
            decision_id = conn.execute(
                decisions.insert()
                .values(
                    tenant_id=tenant,
                    record_id=record_id,
                    kind=kind.value,
                    boxes_json=json.dumps(boxes_json(labels)),
                    reason=reason,
                    reviewer=by,
                    decided_at=now(),
                    dataset=self.dataset if sample else None,
                    sample=sample,
                )
                .returning(decisions.c.decision_id)
            ).scalar_one()
            audit.append(conn, tenant, by, audit.AuditAction.DECISION, f"part:{record_id}", previous, new, reason)
        return DecisionOutcome(int(decision_id), kind, labels, sample)

    def _to_dataset(self, tenant: str, part: Part, labels: tuple[Box, ...]) -> str | None:
        """Put the part into the working dataset with these labels (replacing an earlier decision's)."""
        if part.image_key is None:
            return None
        try:
            path = self.store.path(tenant, part.image_key)
        except ContentStoreError as exc:
            raise BadInputError(f"the part's image is gone from the image store: {exc}") from exc
        name = f"parts/{part.row.record_id}{path.suffix}"
        image = LabelledImage(
            name,
            path,
            labels,
            Annotation.BOXES if labels else Annotation.BACKGROUND,
            group=part.row.part_id or part.row.record_id,
        )
        Catalog(self.engine, self.store, tenant).add_sample(self.dataset, image, source=f"review:{part.row.record_id}")
        return name
