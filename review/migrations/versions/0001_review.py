"""The review app: users, memberships, sessions, decisions and the audit log (append-only by trigger).

Revision ID: rv0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "rv0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("rv_decisions", "rv_audit_log")


def _refuse_changes() -> None:
    """Quality records auditors read: the database itself refuses to change or remove a row of them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION rv_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION rv_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION rv_refuse_change()"
            )
        return
    for table in APPEND_ONLY:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        "rv_users",
        sa.Column("user_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_rv_users"),
        sa.UniqueConstraint("username", name="uq_rv_users_username"),
    )
    op.create_table(
        "rv_memberships",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "tenant_id", "role", name="pk_rv_memberships"),
        sa.ForeignKeyConstraint(["user_id"], ["rv_users.user_id"], name="fk_rv_memberships_user_id_rv_users"),
    )
    op.create_table(
        "rv_sessions",
        sa.Column("session_sha256", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_sha256", name="pk_rv_sessions"),
        sa.ForeignKeyConstraint(["user_id"], ["rv_users.user_id"], name="fk_rv_sessions_user_id_rv_users"),
    )
    op.create_table(
        "rv_decisions",
        sa.Column("decision_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("boxes_json", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=True),
        sa.Column("sample", sa.String(512), nullable=True),
        sa.PrimaryKeyConstraint("decision_id", name="pk_rv_decisions"),
    )
    op.create_index("ix_rv_decisions_tenant_id_record_id", "rv_decisions", ["tenant_id", "record_id"])
    op.create_table(
        "rv_audit_log",
        sa.Column("entry_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("object", sa.String(600), nullable=False),
        sa.Column("old_json", sa.Text(), nullable=False),
        sa.Column("new_json", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("entry_id", name="pk_rv_audit_log"),
    )
    op.create_index("ix_rv_audit_log_tenant_id_at", "rv_audit_log", ["tenant_id", "at"])
    _refuse_changes()


def downgrade() -> None:
    for table in ("rv_audit_log", "rv_decisions", "rv_sessions", "rv_memberships", "rv_users"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION rv_refuse_change()")
