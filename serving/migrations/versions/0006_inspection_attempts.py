"""Inspection attempts (ERROR outcomes, kept as a part's history: append-only, isolated per tenant like the
records) and the health check's write probe (one row per gateway, which the application role rewrites).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lineqa import row_security as rls
from lineqa.append_only import allow_changes, refuse_changes

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspection_attempts",
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("part_id", sa.String(256), nullable=False),
        sa.Column("capture_time", sa.DateTime(timezone=True)),
        sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipe_id", sa.String(128), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("error_code", sa.String(48), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("service_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_inspection_attempts"),
    )
    op.create_index("ix_inspection_attempts_frame", "inspection_attempts", ["tenant", "camera_id", "sequence"])
    op.create_table(
        "health_probes",
        sa.Column("probe_id", sa.String(64), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("probe_id", name="pk_health_probes"),
    )
    refuse_changes(op, ["inspection_attempts"])
    rls.grant(op, "SELECT, INSERT", ["inspection_attempts"])
    rls.isolate(op, "inspection_attempts", "tenant")
    rls.grant(op, "SELECT, INSERT, UPDATE", ["health_probes"])


def downgrade() -> None:
    rls.release(op, ["inspection_attempts", "health_probes"])
    allow_changes(op, ["inspection_attempts"])
    op.drop_table("health_probes")
    op.drop_index("ix_inspection_attempts_frame", table_name="inspection_attempts")
    op.drop_table("inspection_attempts")
