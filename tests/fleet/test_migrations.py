"""The hub's and plant's migrations make exactly the tables ``lineqa.fleet.schema`` declares, beside every other
part's, with their own version table; they go down (triggers and all) and up again; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from lineqa import db
from lineqa.fleet.database import MIGRATIONS, VERSION_TABLE, open_fleet_database
from lineqa.fleet.schema import metadata
from tests.review import test_migrations as review_migrations

url = review_migrations.url  # the fixture: a SQLite file, and a new database on the loopback PostgreSQL


def ours(name: str | None, kind: str, _: object) -> bool:
    return kind != "table" or (name or "").startswith("fl_")


def drift(engine: Engine) -> list[object]:
    """Where the migrated tables differ from the declared ones (the other parts' tables are theirs to check)."""
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts={"include_name": ours}), metadata))


def fleet_tables(engine: Engine) -> set[str]:
    return {t for t in inspect(engine).get_table_names() if t.startswith("fl_")}


def test_migrations_make_the_declared_schema_and_go_down_and_up(url: str) -> None:
    engine = open_fleet_database(url)
    assert fleet_tables(engine) == set(metadata.tables)
    assert {"inspections", "ds_samples", "rv_decisions", VERSION_TABLE} <= set(inspect(engine).get_table_names())
    assert drift(engine) == []
    with engine.begin() as conn:
        command.downgrade(db.alembic_config(MIGRATIONS, VERSION_TABLE, conn), "base")
    assert not fleet_tables(engine)
    engine.dispose()
    engine = open_fleet_database(url)
    assert drift(engine) == []
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO fl_decisions (tenant_id, plant_id, decision_id, record_id, kind, boxes_json, reviewer, "
            "decided_at, reason, received_at) VALUES ('acme', 'p', 1, 'r', 'confirm', '[]', 'qa', CURRENT_TIMESTAMP, "
            "'', CURRENT_TIMESTAMP)"
        )
    for statement in ("UPDATE fl_decisions SET kind = 'correct'", "DELETE FROM fl_decisions"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)  # what plants sent, as received, is never rewritten
    engine.dispose()
