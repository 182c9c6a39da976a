"""PostgreSQL row-level security: the database itself keeps tenants apart (RELIABILITY.md 17).

The migrations (run by the role that owns the tables) create one application role, ``lineqa_app``, grant it
only what the services need on each table, and give every tenant table a policy that shows and accepts only
the rows of the tenant named by the transaction's ``lineqa.tenant`` setting. Without the setting nothing is
visible. :func:`lineqa.db.tenant_scope` makes every transaction of the services take that role and name the
tenant, so a query that forgets its ``WHERE tenant = ...`` still sees one tenant, and a service logging in as
``lineqa_app`` itself (the production setup) sees nothing at all outside a scoped transaction.

The owner bypasses the policies (not forced): migrations, the plant admin's commands and pool building work
across tenants on purpose. A new tenant table gets :func:`isolate` and its own grant in its migration; a test
checks that every table with a tenant column has a policy. SQLite has none of this (see :mod:`lineqa.db`).

These functions are called from migrations, so they only ever emit what a migration written today would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

APP_ROLE = "lineqa_app"
TENANT_SETTING = "lineqa.tenant"
CAMERA_TOKEN_SETTING = "lineqa.camera_token"
REVIEW_USER_SETTING = "lineqa.review_user"

# The role is cluster-wide: a second database on the same server (or two migrations at once) finds it there.
_CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$
"""


def _on_postgresql(op: Any) -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def create_app_role(op: Any) -> None:
    """The application role (a login without a password until ``lineqa db migrate --app-password-file`` sets
    one), and membership of the migrating role in it, so services given the owner's login can still switch
    to it per transaction."""
    if not _on_postgresql(op):
        return
    op.execute(_CREATE_ROLE)
    op.execute(f"GRANT {APP_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")


def grant(op: Any, privileges: str, tables: Iterable[str]) -> None:
    """``GRANT privileges ON table TO lineqa_app`` for each table (and the sequences its serial columns use)."""
    if not _on_postgresql(op):
        return
    for table in tables:
        op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}")


def tenant_is(column: str) -> str:
    """The policy condition: the row belongs to the transaction's tenant (an unset tenant matches no row)."""
    return f"{column} = current_setting('{TENANT_SETTING}', true)"


def user_is(column: str) -> str:
    """A read condition: the row is about the review-app user the transaction checks (:func:`lineqa.db.user_scope`)."""
    return f"{column}::text = current_setting('{REVIEW_USER_SETTING}', true)"


def isolate(op: Any, table: str, column: str = "tenant_id") -> None:
    """Row-level security on ``table``: the application role sees and writes only its tenant's rows."""
    if not _on_postgresql(op):
        return
    condition = tenant_is(column)
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY {table}_tenant ON {table} TO {APP_ROLE} USING ({condition}) WITH CHECK ({condition})")


def allow_read(op: Any, table: str, name: str, condition: str) -> None:
    """A second, read-only way for the application role to see rows of ``table`` (policies add up)."""
    if not _on_postgresql(op):
        return
    op.execute(f"CREATE POLICY {table}_{name} ON {table} FOR SELECT TO {APP_ROLE} USING ({condition})")


def restrict_reads(op: Any, table: str, name: str, condition: str) -> None:
    """Row-level security on a table the application role only reads (granted SELECT before): it sees the
    rows that match ``condition``, which may name the transaction's tenant (:func:`tenant_is`)."""
    if not _on_postgresql(op):
        return
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    allow_read(op, table, name, condition)


def release(op: Any, tables: Iterable[str]) -> None:
    """Undo :func:`isolate` and the grants on ``tables`` (downgrades); the role stays: other databases use it."""
    if not _on_postgresql(op):
        return
    for table in tables:
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {APP_ROLE}")
        for policy in (
            op.get_bind().exec_driver_sql("SELECT policyname FROM pg_policies WHERE tablename = %s", (table,)).scalars()
        ):
            op.execute(f"DROP POLICY {policy} ON {table}")
