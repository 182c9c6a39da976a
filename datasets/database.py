"""The dataset catalog's database: its tables (:mod:`lineqa.datasets.schema`) beside the gateway's in the same
database (``<home>/lineqa.db`` or a PostgreSQL URL), migrated on open with their own Alembic version table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lineqa import db
from lineqa.datasets.errors import DatasetError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "datasets_alembic_version"


def open_catalog_database(url: str) -> Engine:
    try:
        return db.open_database(url, MIGRATIONS, VERSION_TABLE)
    except db.DatabaseOpenError as exc:
        raise DatasetError(str(exc)) from exc
