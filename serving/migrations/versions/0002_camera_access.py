"""Camera access: tenants, their lines and cameras, and hashed per-camera tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenants"),
    )
    op.create_table(
        "lines",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "line_id", name="pk_lines"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_lines_tenant_id_tenants"),
    )
    op.create_table(
        "cameras",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "camera_id", name="pk_cameras"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "line_id"], ["lines.tenant_id", "lines.line_id"], name="fk_cameras_tenant_id_lines"
        ),
    )
    op.create_table(
        "camera_tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name="pk_camera_tokens"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "camera_id"],
            ["cameras.tenant_id", "cameras.camera_id"],
            name="fk_camera_tokens_tenant_id_cameras",
        ),
    )


def downgrade() -> None:
    for table in ("camera_tokens", "cameras", "lines", "tenants"):
        op.drop_table(table)
