"""The hub's and the plant's database: every part's schema (the gateway's tenants, recipes and records, the
catalog, the review app's decisions) and this part's own tables (:mod:`lineqa.fleet.schema`), migrated on open
with their own version table, in one database (``<home>/lineqa.db`` or a PostgreSQL URL)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lineqa import db
from lineqa.fleet.errors import FleetError
from lineqa.review.database import open_review_database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "fleet_alembic_version"


def open_fleet_database(url: str) -> Engine:
    """An engine on ``url`` with every part's schema current (this part's tables refer to the gateway's)."""
    open_review_database(url).dispose()
    try:
        return db.open_database(url, MIGRATIONS, VERSION_TABLE)
    except db.DatabaseOpenError as exc:
        raise FleetError(str(exc)) from exc
