"""Invited experts: ``rv_expert_grants``, a tenant's grants of a scope (whole queue, line, recipe, dataset), a
role and an expiry to an outside user. Row-level security as for every tenant table, plus one read-only way in:
a transaction checking one user (:func:`lineqa.db.user_scope`) sees that user's grants in every tenant, which is
how a request finds what its signed-in expert may see before it acts for a tenant.

Revision ID: rv0003
Revises: rv0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lineqa import row_security as rls

revision = "rv0003"
down_revision = "rv0002"
branch_labels = None
depends_on = None

TABLE = "rv_expert_grants"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("grant_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("grant_id", name="pk_rv_expert_grants"),
        sa.ForeignKeyConstraint(["user_id"], ["rv_users.user_id"], name="fk_rv_expert_grants_user_id_rv_users"),
    )
    op.create_index("ix_rv_expert_grants_user_id", TABLE, ["user_id"])
    op.create_index("ix_rv_expert_grants_tenant_id", TABLE, ["tenant_id"])
    rls.grant(op, "SELECT, INSERT, UPDATE", [TABLE])
    rls.isolate(op, TABLE)
    rls.allow_read(op, TABLE, "own", rls.user_is("user_id"))


def downgrade() -> None:
    rls.release(op, [TABLE])
    op.drop_table(TABLE)
