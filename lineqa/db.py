"""One way to open a database for every part that keeps state (gateway records and access, the dataset
catalog): SQLite by default with the durability settings they need, any SQLAlchemy URL otherwise
(PostgreSQL past one machine), the schema brought to the newest Alembic migration on open.

Each part has its own migration folder and its own Alembic version table, so parts evolve their tables
independently while sharing one database file (``<home>/lineqa.db``) or one PostgreSQL database.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

# Named constraints, so that migrations can refer to them on every database (SQLite batch mode included).
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}


class DatabaseOpenError(Exception):
    """The database cannot be reached or its schema cannot be brought up to date."""


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def database_url(home: Path, url: str | None = None) -> str:
    """``url`` when given (``--db``), else the home's SQLite file that every part shares."""
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


def alembic_config(migrations: Path, version_table: str, connection: Connection | None = None) -> Config:
    """The Alembic configuration of one part's migrations (its ``env.py`` reads these attributes)."""
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    return config


def open_database(url: str, migrations: Path, version_table: str) -> Engine:
    """An engine on ``url`` whose schema for these migrations is current.

    The upgrade runs in one transaction; on PostgreSQL an advisory lock (one per version table) lets
    several replicas start at once without racing the same migration.
    """
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                lock = zlib.crc32(version_table.encode())
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock})")
            command.upgrade(alembic_config(migrations, version_table, connection), "head")
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseOpenError(f"cannot open the database {engine.url!r}: {exc}") from exc
    return engine
