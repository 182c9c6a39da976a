"""Recipes as versioned, audited records per tenant, and the platform models each tenant may use; both
append-only.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lineqa.append_only import allow_changes, refuse_changes

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("recipe_versions", "model_grants")


def upgrade() -> None:
    op.create_table(
        "recipe_versions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("recipe_id", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("yaml", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "recipe_id", "number", name="pk_recipe_versions"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_recipe_versions_tenant_id_tenants"),
    )
    op.create_table(
        "model_grants",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("granted_by", sa.String(128), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_model_grants"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_model_grants_tenant_id_tenants"),
    )
    refuse_changes(op, TABLES)


def downgrade() -> None:
    allow_changes(op, TABLES)
    for table in reversed(TABLES):
        op.drop_table(table)
