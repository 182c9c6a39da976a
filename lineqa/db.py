"""One way to open a database for every part that keeps state (gateway records and access, the dataset
catalog): SQLite by default with the durability settings they need, any SQLAlchemy URL otherwise
(PostgreSQL past one machine), the schema brought to the newest Alembic migration on open.

Each part has its own migration folder and its own Alembic version table, so parts evolve their tables
independently while sharing one database file (``<home>/lineqa.db``) or one PostgreSQL database.

Tenancy: work done for one tenant goes through :func:`tenant_scope`. On PostgreSQL every transaction of a
scoped engine first becomes the application role and names its tenant (``SET LOCAL``-style, so nothing
outlives the transaction), and row-level security (:mod:`lineqa.row_security`) hides and refuses every other
tenant's rows, whatever the query says. An unscoped engine is the platform's: migrations, the plant admin's
commands and pool building, run as the login role. SQLite has no roles: there the queries' own tenant filters
are the isolation, which is fit for a single-tenant plant.
"""

from __future__ import annotations

import os
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from lineqa.home import private_folder
from lineqa.row_security import APP_ROLE, CAMERA_TOKEN_SETTING, REVIEW_USER_SETTING, TENANT_SETTING

# Named constraints, so that migrations can refer to them on every database (SQLite batch mode included).
NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}


_INSUFFICIENT_PRIVILEGE = "42501"


class DatabaseOpenError(Exception):
    """The database cannot be reached or its schema cannot be brought up to date."""


def as_utc(value: datetime) -> datetime:
    """A time read back from the database, in UTC: SQLite returns the stored UTC time without its zone,
    PostgreSQL in the session's zone."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def database_url(home: Path, url: str | None = None) -> str:
    """``url`` when given (``--db``), else the home's SQLite file that every part shares.

    The home and the database file are created private (0700, 0600): the database holds password and token
    hashes and quality records. SQLite gives its WAL and shared-memory files the database file's mode.
    """
    if url:
        return url
    path = private_folder(home) / "lineqa.db"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return sqlite_url(path)


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


def run_migrations(metadata: MetaData, table_prefix: str) -> None:
    """What a part's Alembic ``env.py`` does: migrate on the connection :func:`open_database` hands over, with
    the part's own version table, comparing only the part's own tables (those named ``<table_prefix>...``)."""
    from alembic import context

    context.configure(
        connection=context.config.attributes["connection"],
        target_metadata=metadata,
        version_table=context.config.attributes["version_table"],
        include_name=lambda name, kind, _: kind != "table" or (name or "").startswith(table_prefix),
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _enter_scope(connection: Connection) -> None:
    """At the start of a scoped transaction on PostgreSQL: become the application role, name the tenant (or
    the camera token or review-app user being checked). ``set_config(..., true)`` lasts until the transaction
    ends."""
    options = connection.get_execution_options()
    tenant, token = options.get("lineqa_tenant"), options.get("lineqa_camera_token")
    user = options.get("lineqa_review_user")
    if tenant is None and token is None and user is None:
        return
    connection.exec_driver_sql(
        "SELECT set_config('role', %s, true), set_config(%s, %s, true), set_config(%s, %s, true), "
        "set_config(%s, %s, true)",
        (APP_ROLE, TENANT_SETTING, tenant or "", CAMERA_TOKEN_SETTING, token or "", REVIEW_USER_SETTING, user or ""),
    )


def _scoped(engine: Engine, **scope: str) -> Engine:
    if engine.dialect.name == "postgresql" and _enter_scope not in list(engine.dispatch.begin):
        raise DatabaseOpenError("a tenant scope needs an engine made by lineqa.db.open_database")
    return engine.execution_options(**scope)


def tenant_scope(engine: Engine, tenant: str) -> Engine:
    """``engine`` for work done on behalf of ``tenant``: on PostgreSQL it sees and writes only that tenant's
    rows of the tenant tables. Cheap (shares the engine's pool)."""
    return _scoped(engine, lineqa_tenant=tenant)


def token_scope(engine: Engine, token_id: str) -> Engine:
    """``engine`` for checking one camera token, before its tenant is known: on PostgreSQL it sees that token's
    row and its camera, nothing else."""
    return _scoped(engine, lineqa_camera_token=token_id)


def user_scope(engine: Engine, user_id: int) -> Engine:
    """``engine`` for finding what one review-app user was granted as an invited expert, before a tenant is
    known: on PostgreSQL it sees that user's expert grants in every tenant, and no tenant's other rows."""
    return _scoped(engine, lineqa_review_user=str(user_id))


def open_database(url: str, migrations: Path, version_table: str) -> Engine:
    """An engine on ``url`` whose schema for these migrations is current.

    The upgrade runs in one transaction; on PostgreSQL an advisory lock (one per version table) lets
    several replicas start at once without racing the same migration. A service that logs in as the
    application role cannot migrate: with the schema current, opening is a check; otherwise it fails and
    names the owner's ``lineqa admin db migrate``. Statement parameters never appear in logs or errors.
    """
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine, "begin", _enter_scope)
    try:
        with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                lock = zlib.crc32(version_table.encode())
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock})")
            command.upgrade(alembic_config(migrations, version_table, connection), "head")
    except SQLAlchemyError as exc:
        engine.dispose()
        if getattr(getattr(exc, "orig", None), "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
            raise DatabaseOpenError(
                f"the database {engine.url!r} needs migrating, which its user may not do: run 'lineqa db migrate' "
                "with the owner's URL first"
            ) from exc
        raise DatabaseOpenError(f"cannot open the database {engine.url!r}: {exc}") from exc
    return engine
