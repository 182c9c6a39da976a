"""The review app's migrations make exactly the tables ``lineqa.review.schema`` declares, beside the gateway's and
the catalog's, with their own version table; they go down (triggers and all) and up again."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from lineqa import db
from lineqa.db import sqlite_url
from lineqa.review.database import MIGRATIONS, VERSION_TABLE, open_review_database
from lineqa.review.schema import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "lineqa.db")
    return str(request.getfixturevalue("empty_postgres_url"))


def drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": lambda name, kind, _: kind != "table" or (name or "").startswith("rv_")}
        )
        return list(compare_metadata(context, metadata))


def test_migrations_make_the_declared_schema_and_go_down_and_up(url: str) -> None:
    engine = open_review_database(url)
    tables = set(inspect(engine).get_table_names())
    assert {t for t in tables if t.startswith("rv_")} == set(metadata.tables)
    assert {"inspections", "ds_samples", VERSION_TABLE, "alembic_version", "datasets_alembic_version"} <= tables
    assert drift(engine) == []
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(MIGRATIONS, VERSION_TABLE, conn), "base")
    assert not {t for t in inspect(engine).get_table_names() if t.startswith("rv_")}
    engine.dispose()
    engine = open_review_database(url)
    assert drift(engine) == []
    with engine.begin() as conn:  # the append-only triggers are back too
        conn.exec_driver_sql(
            "INSERT INTO rv_audit_log (tenant_id, at, actor, action, object, old_json, new_json, reason) "
            "VALUES ('acme', CURRENT_TIMESTAMP, 'a', 'part.decision', 'part:x', 'null', 'null', '')"
        )
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM rv_audit_log")
    engine.dispose()
