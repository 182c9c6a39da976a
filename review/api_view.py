"""The machine-readable variants of the review app's pages (``?format=json``), for ``lineqa review remote`` and
scripts: the same routes, so the same access table, expert grants and audit entries apply; only the rendering
differs. Plain dicts of JSON types, built from the objects the pages render; no state, no routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from starlette.requests import Request

from lineqa.review.boxes import boxes_json
from lineqa.review.decisions import DecisionOutcome, labels_in_force
from lineqa.review.labelling import DatasetSummary
from lineqa.review.queue import DecisionView, Part, QueuePage, QueueRow

JSON_FORMAT = "json"


def wants_json(request: Request) -> bool:
    """``?format=json``, or a client that accepts JSON rather than pages (the remote CLI sends both)."""
    return request.query_params.get("format") == JSON_FORMAT or "application/json" in request.headers.get("accept", "")


def json_response(value: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status_code)


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def row_json(row: QueueRow) -> dict[str, Any]:
    """One part as the queue lists it."""
    return {
        "record_id": row.record_id,
        "part_id": row.part_id,
        "line": row.line_id,
        "camera": row.camera_id,
        "received_at": _time(row.receive_time),
        "verdict": row.verdict,
        "model": row.model,
        "decision": row.decision,
        "doubt": round(row.doubt, 4),
        "reason": row.reason,
        "defects": [
            {"class": d.class_name, "confidence": d.confidence, "box": list(d.box), "disposition": d.disposition}
            for d in row.defects
        ],
    }


def queue_json(shown: QueuePage, page: int, page_size: int) -> dict[str, Any]:
    return {
        "total": shown.total,
        "page": page,
        "page_size": page_size,
        "more": page * page_size < shown.total,
        "parts": [row_json(r) for r in shown.rows],
    }


def _decision_json(d: DecisionView) -> dict[str, Any]:
    return {
        "decision_id": d.decision_id,
        "kind": d.kind,
        "boxes": d.boxes,
        "reason": d.reason,
        "reviewer": d.reviewer,
        "decided_at": _time(d.decided_at),
        "dataset": d.dataset,
        "sample": d.sample,
    }


def part_json(tenant: str, part: Part, classes: list[str]) -> dict[str, Any]:
    """One part: its queue row, traceability record, the model's reasons, decisions and the labels in force."""
    return {
        **row_json(part.row),
        "tenant": tenant,
        "sequence": part.sequence,
        "captured_at": _time(part.capture_time),
        "recipe": {"id": part.recipe_id, "version": part.recipe_version},
        "model_name": part.model_name,
        "model_version": part.model_version,
        "image_sha256": part.image_sha256,
        "image": f"/t/{tenant}/parts/{part.row.record_id}/image" if part.image_key else None,
        "service_version": part.service_version,
        "reasons": list(part.reasons),
        "decisions": [_decision_json(d) for d in part.decisions],
        "labels_in_force": boxes_json(labels_in_force(part)) if part.decisions else None,
        "classes": classes,
    }


def outcome_json(tenant: str, record_id: str, outcome: DecisionOutcome) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "record_id": record_id,
        "decision_id": outcome.decision_id,
        "kind": outcome.kind.value,
        "recorded": outcome.recorded,
        "boxes": len(outcome.labels),
        "sample": outcome.sample,
    }


def dataset_json(d: DatasetSummary) -> dict[str, Any]:
    return {
        "name": d.name,
        "classes": list(d.classes),
        "working_samples": d.working_samples,
        "versions": [
            {
                "number": v.number,
                "sha256": v.sha256,
                "note": v.note,
                "created_at": _time(v.created_at),
                "images": v.images,
            }
            for v in d.versions
        ],
    }
