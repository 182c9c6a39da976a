"""Tables that the database itself keeps append-only: triggers refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL), on SQLite and on PostgreSQL alike (RELIABILITY.md 10). Called from migrations.

A later SQLite migration that rebuilds such a table (Alembic's batch mode copies it into a new one) drops its
triggers with it: that migration must call :func:`refuse_changes` again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_FUNCTION = "lineqa_refuse_change"


def refuse_changes(op: Any, tables: Iterable[str]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP; END $$"
        )
        for table in tables:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()")  # fmt: skip
            op.execute(f"CREATE TRIGGER {table}_keep_rows BEFORE TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()")  # fmt: skip
        return
    for table in tables:
        for change in ("update", "delete"):
            op.execute(f"CREATE TRIGGER {table}_refuse_{change} BEFORE {change.upper()} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {change} refused'); END")  # fmt: skip


def allow_changes(op: Any, tables: Iterable[str]) -> None:
    """Undo :func:`refuse_changes` (downgrades only)."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in tables:
        if postgres:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_keep_rows ON {table}")
        else:
            op.execute(f"DROP TRIGGER {table}_refuse_update")
            op.execute(f"DROP TRIGGER {table}_refuse_delete")
