"""RELIABILITY.md 17 in the database itself: PostgreSQL row-level security on every tenant table.

On a real PostgreSQL migrated by its owner, two tenants' rows are put in every tenant table of every part
(gateway, catalog, review). Logged in as the application role the migrations create, a transaction scoped to
one tenant sees only that tenant's rows and cannot add, change or remove the other's; an unscoped transaction
sees nothing; a service given the owner's login is switched to the application role by its scope. A table
with a tenant column but no policy fails here, so a new tenant table cannot be forgotten.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Boolean, DateTime, Engine, Integer, LargeBinary, String, Table, create_engine, func, select
from sqlalchemy.exc import DBAPIError

from lineqa.datasets.schema import metadata as catalog_metadata
from lineqa.db import tenant_scope, token_scope, user_scope
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.schema import metadata as fleet_metadata
from lineqa.review.database import open_review_database
from lineqa.review.schema import expert_grants
from lineqa.review.schema import metadata as review_metadata
from lineqa.review.schema import users as review_users
from lineqa.row_security import APP_ROLE
from lineqa.serving.access import AccessStore
from lineqa.serving.database import DatabaseError, alembic_config, open_database
from lineqa.serving.records import RecordStore
from lineqa.serving.schema import metadata as gateway_metadata
from tests.conftest import app_role_url
from tests.serving.test_records import record

TENANTS = ("acme", "globex")
# Keyed by person, not tenant: signing in finds a user's roles in every tenant (review/migrations rv0002); and
# by plant: the hub finds a plant by its certificate before it knows its tenant (fleet/migrations fl0001).
PERSON_TABLES = {"rv_memberships", "fl_plants"}
INSUFFICIENT_PRIVILEGE = "42501"  # also what a row-level security violation raises


def tenant_column(table: Table) -> str | None:
    return next((c for c in ("tenant_id", "tenant") if c in table.c), None)


TENANT_TABLES = [
    table
    for metadata in (gateway_metadata, catalog_metadata, review_metadata, fleet_metadata)
    for table in metadata.sorted_tables
    if tenant_column(table) and table.name not in PERSON_TABLES
]


def row(table: Table, tenant: str) -> dict[str, Any]:
    """A row of ``tenant`` for ``table``: every required column filled so that the foreign keys between one
    tenant's rows match (the same text everywhere: ``<tenant>-x``)."""
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.autoincrement is True or (column.nullable and not column.primary_key):
            continue
        kind = column.type
        if isinstance(kind, Boolean):
            values[column.name] = True
        elif isinstance(kind, Integer):
            values[column.name] = 1
        elif isinstance(kind, DateTime):
            values[column.name] = datetime.now(timezone.utc)
        elif isinstance(kind, LargeBinary):
            values[column.name] = b"x"
        elif isinstance(kind, String):
            values[column.name] = f"{tenant}-x"
    values[tenant_column(table) or ""] = tenant
    return values


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    """(owner engine, application-role engine) on a database migrated by its owner, with both tenants' rows
    in every tenant table."""
    from tests.conftest import _fresh_postgres_database

    with _fresh_postgres_database() as url:
        owner = open_fleet_database(url)  # every part's migrations, as the owner
        with owner.begin() as conn:  # the user (id 1) the expert grants of both tenants name
            conn.execute(review_users.insert().values(user_id=1, username="expert", password_hash="x",
                                                      created_at=datetime.now(timezone.utc)))  # fmt: skip
            for table in TENANT_TABLES:
                for tenant in TENANTS:
                    conn.execute(table.insert().values(**row(table, tenant)))
        app = open_fleet_database(app_role_url(url))  # what the services open: at head, opening only checks
        yield owner, app
        app.dispose()
        owner.dispose()


def visible(engine: Engine, table: Table) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c[tenant_column(table) or ""])).scalars())


def test_every_tenant_table_has_a_policy(database: tuple[Engine, Engine]) -> None:
    owner, _ = database
    with owner.connect() as conn:
        with_tenant_column = set(
            conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND column_name IN ('tenant_id', 'tenant')"
            ).scalars()
        )
        protected = set(
            conn.exec_driver_sql(
                "SELECT c.relname FROM pg_class c JOIN pg_policies p ON p.tablename = c.relname "
                "WHERE c.relrowsecurity AND p.policyname = c.relname || '_tenant' AND %s = ANY(p.roles)",
                (APP_ROLE,),
            ).scalars()
        )
        owner_of_tables = conn.exec_driver_sql("SELECT tableowner FROM pg_tables WHERE tablename = 'inspections'")
        assert owner_of_tables.scalar() != APP_ROLE  # the service's role owns nothing: it cannot disable a policy
    assert with_tenant_column - PERSON_TABLES == protected == {t.name for t in TENANT_TABLES}
    assert len(protected) == 23


@pytest.mark.parametrize("table", TENANT_TABLES, ids=lambda t: t.name)
def test_a_tenant_sees_only_its_rows_and_without_a_tenant_nothing(
    database: tuple[Engine, Engine], table: Table
) -> None:
    owner, app = database
    assert visible(owner, table) == sorted(TENANTS)  # the owner (platform, migrations) sees both
    for tenant in TENANTS:
        assert visible(tenant_scope(app, tenant), table) == [tenant]
        assert visible(tenant_scope(owner, tenant), table) == [tenant]  # the owner's login, scoped: the same
    assert visible(app, table) == []  # no tenant named: nothing


@pytest.mark.parametrize("table", TENANT_TABLES, ids=lambda t: t.name)
def test_a_tenant_cannot_write_another_tenants_rows(database: tuple[Engine, Engine], table: Table) -> None:
    owner, app = database
    acme = tenant_scope(app, "acme")
    column = table.c[tenant_column(table) or ""]
    with pytest.raises(DBAPIError) as refused, acme.begin() as conn:
        conn.execute(table.insert().values(**{**row(table, "globex"), **_fresh_key(table)}))
    assert refused.value.orig is not None and getattr(refused.value.orig, "sqlstate", "") == INSUFFICIENT_PRIVILEGE
    for statement in (
        table.update().where(column == "globex").values({column.name: "acme"}),
        table.delete().where(column == "globex"),
    ):
        try:
            with acme.begin() as conn:
                assert conn.execute(statement).rowcount == 0  # the other tenant's rows are not there to change
        except DBAPIError as exc:  # or the role may not change this table at all (append-only tables)
            assert getattr(exc.orig, "sqlstate", "") == INSUFFICIENT_PRIVILEGE
    with owner.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table).where(column == "globex")).scalar_one() == 1


def _fresh_key(table: Table) -> dict[str, Any]:
    """Primary-key values no seeded row has, so that only the policy can refuse the row."""
    return {c.name: "new-key" for c in table.primary_key.columns if isinstance(c.type, String) and
            c.name != tenant_column(table)}  # fmt: skip


def test_a_user_check_sees_that_users_expert_grants_in_every_tenant_only(database: tuple[Engine, Engine]) -> None:
    _, app = database
    assert visible(user_scope(app, 1), expert_grants) == sorted(TENANTS)  # before a request knows its tenant
    assert visible(user_scope(app, 2), expert_grants) == []
    for table in TENANT_TABLES:
        if table is not expert_grants:
            assert visible(user_scope(app, 1), table) == [], table.name


def test_a_camera_token_check_sees_its_token_and_camera_only(database: tuple[Engine, Engine]) -> None:
    _, app = database
    tables = {t.name: t for t in TENANT_TABLES}
    checking = token_scope(app, "globex-x")
    assert visible(checking, tables["camera_tokens"]) == ["globex"]
    assert visible(checking, tables["cameras"]) == ["globex"]
    for name in ("tenants", "lines", "inspections", "recipe_versions", "ds_images", "rv_audit_log"):
        assert visible(checking, tables[name]) == []
    assert visible(token_scope(app, "no-such-token"), tables["camera_tokens"]) == []


def test_the_gateways_token_check_works_as_the_application_role(database: tuple[Engine, Engine]) -> None:
    owner, app = database
    issued = AccessStore(owner).issue_token("acme", "acme-x")
    principal = AccessStore(app).authenticate(issued.token)
    assert (principal.tenant_id, principal.camera_id, principal.line_id) == ("acme", "acme-x", "acme-x")


def test_the_owner_migrates_and_the_application_role_only_opens(empty_postgres_url: str) -> None:
    """A service logging in as the application role cannot migrate: before ``lineqa db migrate`` it is told to
    run it; after, it opens. The password that command sets reaches the server as a SCRAM verifier only."""
    app_url = app_role_url(empty_postgres_url)
    older = open_review_database(empty_postgres_url)  # so that the role exists and could log in
    with older.begin() as conn:  # then the gateway's schema goes back to before the application role
        command.downgrade(alembic_config(conn), "0003")
    older.dispose()
    with pytest.raises(DatabaseError, match="run 'lineqa db migrate' with the owner's URL"):
        open_database(app_url)
    password = "correct-horse-battery-staple"
    env = {**os.environ, "LINEQA_APP_DB_PASSWORD": password}
    cmd = [sys.executable, "-m", "lineqa.cli", "db", "--db", empty_postgres_url, "migrate", "--app-password-env",
           "LINEQA_APP_DB_PASSWORD"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "every schema is current; lineqa_app's password set" in done.stdout, done.stderr
    assert password not in done.stdout + done.stderr
    open_database(app_url).dispose()
    owner = create_engine(empty_postgres_url)
    with owner.connect() as conn:
        stored = conn.exec_driver_sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_ROLE,)).scalar()
    owner.dispose()
    assert stored.startswith("SCRAM-SHA-256$") and password not in stored


def test_the_gateways_records_work_as_the_application_role(database: tuple[Engine, Engine]) -> None:
    """Commit, replay and find, as the gateway does them, logged in as the application role."""
    _, app = database
    store = RecordStore(app)
    first = record(1, camera="cam-rls")
    stored, existed = store.commit(first)
    assert not existed and stored == first
    again, existed = store.commit(replace(first, record_id=str(uuid.uuid4()), verdict="PASS"))
    assert existed and again.record_id == first.record_id and again.verdict == "FAIL"  # the original result
    found = store.find("acme", "cam-rls", 1)
    assert found is not None and found.record_id == first.record_id
    assert store.find("globex", "cam-rls", 1) is None
