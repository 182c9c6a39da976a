"""Inspection records: one row per judged frame, unique per (tenant, camera, sequence).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("part_id", sa.String(256), nullable=False),
        sa.Column("capture_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("receive_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("recipe_id", sa.String(128), nullable=False),
        sa.Column("recipe_version", sa.String(64), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_key", sa.String(512), nullable=True),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("error_code", sa.String(48), nullable=False),
        sa.Column("defects_json", sa.Text(), nullable=False),
        sa.Column("service_version", sa.String(64), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_inspections"),
        sa.UniqueConstraint("tenant", "camera_id", "sequence", name="uq_inspections_frame"),
    )


def downgrade() -> None:
    op.drop_table("inspections")
