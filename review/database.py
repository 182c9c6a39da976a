"""The review app's database: the gateway's records and the dataset catalog it reads and feeds, and its own
tables (:mod:`lineqa.review.schema`), all in one database (``<home>/lineqa.db`` or a PostgreSQL URL). Opening it
brings each part's schema up to date with that part's own migrations and version table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from lineqa import db
from lineqa.datasets.database import open_catalog_database
from lineqa.review.errors import ReviewError
from lineqa.serving.database import open_database as open_gateway_database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "review_alembic_version"


def open_review_database(url: str) -> Engine:
    """An engine on ``url`` with the gateway's, the catalog's and the review app's schemas current."""
    open_gateway_database(url).dispose()
    open_catalog_database(url).dispose()
    try:
        return db.open_database(url, MIGRATIONS, VERSION_TABLE)
    except db.DatabaseOpenError as exc:
        raise ReviewError(str(exc)) from exc
