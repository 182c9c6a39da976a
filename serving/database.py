"""Open the gateway database and bring its schema to the current migration.

SQLite by default, with the durability settings records need (WAL journal, ``synchronous=FULL``, a busy
timeout, foreign keys on); any SQLAlchemy URL otherwise (PostgreSQL in production). Opening upgrades the
schema with Alembic, so a new release never runs against an old schema; on PostgreSQL an advisory lock lets
several gateway replicas start at once without racing the same migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from serving.errors import ServingError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x6C696E65  # any constant shared by every replica: "line"


class DatabaseError(ServingError):
    """The gateway database cannot be opened, migrated, read or written."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def database_url(home: Path, url: str | None = None) -> str:
    """``url`` when given (``--db``), else the home's SQLite file, which the gateway, ``lineqa admin`` and
    the review app share."""
    if url:
        return url
    home.mkdir(parents=True, exist_ok=True)
    return sqlite_url(home / "lineqa.db")


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest migration, in one transaction."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        command.upgrade(alembic_config(connection), "head")


def open_database(url: str) -> Engine:
    """An engine on ``url`` whose schema is current."""
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseError(f"cannot open the database {engine.url!r}: {exc}") from exc
    return engine
