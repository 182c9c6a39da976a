"""What the part page and the notices say: the boxes the editor opens with, whose they are, and what the last
decision did. Everything is read from the database; a URL only names a decision by its id, so no text of the
URL is ever shown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineqa.review.boxes import boxes_json
from lineqa.review.decisions import DecisionKind, labels_in_force
from lineqa.review.errors import NotFoundError
from lineqa.review.queue import Part, ReviewQueue
from lineqa.review.queue_filter import PartScope

KIND_NAMES = {DecisionKind.CONFIRM.value: "Confirm", DecisionKind.FALSE_ALARM.value: "False alarm",
              DecisionKind.CORRECT.value: "Correction"}  # fmt: skip


def editor_data(tenant: str, part: Part, classes: list[str]) -> dict[str, Any]:
    """The box editor's data: the labels in force (the latest decision's, else the model's boxes) and their
    source in words."""
    if part.decisions:
        latest = part.decisions[-1]
        boxes = [{**label, "disposition": "label"} for label in boxes_json(labels_in_force(part))]
        source = (f"the boxes in force: {latest.reviewer}'s {KIND_NAMES[latest.kind].lower()} of "
                  f"{latest.decided_at:%Y-%m-%d %H:%M} UTC (the model's are listed under Model defects)")  # fmt: skip
    else:
        boxes = [
            {"class": d.class_name, "box": list(d.box), "confidence": d.confidence, "disposition": d.disposition}
            for d in part.row.defects
        ]
        source = f"the model's boxes ({part.model_name} v{part.model_version}); nobody has decided yet"
    record_id = part.row.record_id
    return {
        "boxes": boxes,
        "source": source,
        "decided": bool(part.decisions),
        "classes": classes,
        "image": f"/t/{tenant}/parts/{record_id}/image" if part.image_key else None,
    }


def notice(queue: ReviewQueue, tenant: str, params: Mapping[str, str], within: PartScope | None = None) -> str | None:
    """What the last decision did: ``done=<decision id>`` recorded one, ``kept=<decision id>`` recorded nothing
    because the boxes were unchanged. An id that is not this tenant's decision says nothing."""
    for key in ("done", "kept"):
        value = params.get(key, "")
        if not value.isdigit():
            continue
        try:
            shown, part_name = queue.decision(tenant, int(value), within)
        except NotFoundError:
            return None
        kind = KIND_NAMES[shown.kind]
        if key == "done":
            return f"{kind} recorded for part {part_name} by {shown.reviewer}."
        return (f"No box changed on part {part_name}: {shown.reviewer}'s {kind.lower()} of "
                f"{shown.decided_at:%Y-%m-%d %H:%M} UTC stays in force; nothing was recorded.")  # fmt: skip
    return None
