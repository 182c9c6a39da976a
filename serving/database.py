"""The gateway database: inspection records and camera access (:mod:`lineqa.serving.schema`), opened through
:mod:`lineqa.db` (SQLite with WAL and ``synchronous=FULL`` by default, PostgreSQL by URL) and migrated by the
Alembic scripts in ``serving/migrations`` on open, so a new release never runs against an old schema.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Connection, Engine

from lineqa import db
from lineqa.db import database_url, sqlite_url
from lineqa.serving.errors import ServingError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"

__all__ = ["DatabaseError", "alembic_config", "database_url", "open_database", "sqlite_url"]


class DatabaseError(ServingError):
    """The gateway database cannot be opened, migrated, read or written."""


def alembic_config(connection: Connection | None = None) -> Config:
    return db.alembic_config(MIGRATIONS, VERSION_TABLE, connection)


def open_database(url: str) -> Engine:
    """An engine on ``url`` whose gateway schema is current."""
    try:
        return db.open_database(url, MIGRATIONS, VERSION_TABLE)
    except db.DatabaseOpenError as exc:
        raise DatabaseError(str(exc)) from exc
