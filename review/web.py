"""What the review app's pages and files are made of: the Jinja2 environment (autoescaped), security headers,
CSV and image responses, and the audit trail's rows (one function for the page and its CSV, so both carry the
same columns and the same JSON). No state, no routes: :mod:`lineqa.review.app` and its ``routes_*``
modules have those."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi.responses import FileResponse, Response

from lineqa.content_store import ContentStore, ContentStoreError
from lineqa.datasets.probe import probe_image
from lineqa.review.audit import AuditEntry
from lineqa.review.errors import NotFoundError

TEMPLATES = Path(__file__).resolve().parent / "templates"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".webp": "image/webp",
}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.filters["when"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"
    return env


AUDIT_COLUMNS = ("at (UTC)", "who", "action", "object", "old", "new", "reason")


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def audit_row(entry: AuditEntry) -> list[str]:
    """One audit entry as the page shows it and the CSV writes it: old and new values as JSON text."""
    return [
        entry.at.isoformat(timespec="seconds"),
        entry.actor,
        entry.action.value,
        entry.object,
        as_json(entry.old),
        as_json(entry.new),
        entry.reason,
    ]


def safe_next(target: str | None) -> str:
    """Only same-site paths after login: never an open redirect to another host."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def csv_response(header: list[str], rows: list[list[Any]], filename: str) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:  # a cell starting like a formula is quoted so spreadsheets do not run it
        writer.writerow(["'" + c if isinstance(c, str) and c[:1] in ("=", "+", "-", "@") else c for c in row])
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def image_response(store: ContentStore, tenant: str, key: str) -> FileResponse:
    """An image of ``tenant`` only: the store refuses keys outside the tenant's prefix."""
    try:
        path = store.path(tenant, key)
    except ContentStoreError as exc:
        raise NotFoundError(str(exc)) from exc
    return FileResponse(
        path,
        media_type=IMAGE_TYPES.get(path.suffix, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=86400"},
    )


def image_size(store: ContentStore, tenant: str, key: str | None) -> tuple[int, int] | None:
    """(width, height) of a part's image, read from its header, for clipping boxes; None without an image."""
    if key is None:
        return None
    try:
        facts = probe_image(store.get(tenant, key))
    except ContentStoreError as exc:
        raise NotFoundError(str(exc)) from exc
    return (facts.width, facts.height) if facts.width and facts.height else None
