"""Inspection attempts (ERROR outcomes, kept as a part's history) and the health check's write probe.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
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


def downgrade() -> None:
    op.drop_table("health_probes")
    op.drop_index("ix_inspection_attempts_frame", table_name="inspection_attempts")
    op.drop_table("inspection_attempts")
