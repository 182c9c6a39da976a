"""Alembic migrations make exactly the schema the code declares, on SQLite and on the loopback PostgreSQL;
they go down and up again; several gateway replicas opening one new PostgreSQL database at once migrate it
once, without an error."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from lineqa.serving.database import alembic_config, open_database, sqlite_url
from lineqa.serving.schema import metadata

TABLES = {"tenants", "lines", "cameras", "camera_tokens", "inspections", "recipe_versions", "model_grants",
          "inspection_attempts", "health_probes"}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "gateway.db")
    return str(request.getfixturevalue("empty_postgres_url"))


def schema_drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_migrations_make_the_declared_schema(url: str) -> None:
    engine = open_database(url)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert schema_drift(engine) == []
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head == "0006"
    engine.dispose()


def test_down_to_nothing_and_up_again_keeps_later_opens_idempotent(url: str) -> None:
    engine = open_database(url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    later = {"recipe_versions", "model_grants", "inspection_attempts", "health_probes"}
    assert set(inspect(engine).get_table_names()) == TABLES - later | {"alembic_version"}
    with engine.begin() as conn:  # below 0003 the records are no longer append-only
        conn.exec_driver_sql("DELETE FROM inspections")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert set(inspect(engine).get_table_names()) == {"inspections", "alembic_version"}
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    engine = open_database(url)  # opening upgrades
    assert schema_drift(engine) == []
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tenants (tenant_id, display_name, created_at) VALUES ('acme', 'Acme', CURRENT_TIMESTAMP)"
        )
    engine.dispose()
    engine = open_database(url)  # already current: nothing changes, nothing is lost
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT tenant_id FROM tenants").scalars().all() == ["acme"]
    engine.dispose()


def test_replicas_starting_together_migrate_once(empty_postgres_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def replica() -> None:
        barrier.wait()
        try:
            open_database(empty_postgres_url).dispose()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = open_database(empty_postgres_url)
    assert schema_drift(engine) == []
    engine.dispose()
