"""The dataset catalog: images, working datasets and samples, versions, contributions, pools.

Revision ID: ds0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ds0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ds_images",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ext", sa.String(8), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "sha256", name="pk_ds_images"),
    )
    op.create_table(
        "ds_datasets",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("classes_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_ds_datasets"),
    )
    op.create_table(
        "ds_samples",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("annotation", sa.String(16), nullable=False),
        sa.Column("boxes_json", sa.Text(), nullable=False),
        sa.Column("group_id", sa.String(256), nullable=True),
        sa.Column("split", sa.String(32), nullable=True),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "dataset", "name", name="pk_ds_samples"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "dataset"],
            ["ds_datasets.tenant_id", "ds_datasets.name"],
            name="fk_ds_samples_tenant_id_ds_datasets",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "sha256"],
            ["ds_images.tenant_id", "ds_images.sha256"],
            name="fk_ds_samples_tenant_id_ds_images",
        ),
    )
    op.create_table(
        "ds_versions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "dataset", "number", name="pk_ds_versions"),
        sa.UniqueConstraint("tenant_id", "dataset", "manifest_sha256", name="uq_ds_versions_manifest"),
    )
    op.create_table(
        "ds_contributions",
        sa.Column("contribution_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("consented_by", sa.String(128), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("contribution_id", name="pk_ds_contributions"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "dataset", "number"],
            ["ds_versions.tenant_id", "ds_versions.dataset", "ds_versions.number"],
            name="fk_ds_contributions_tenant_id_ds_versions",
        ),
    )
    op.create_table(
        "ds_pools",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("contributions_json", sa.Text(), nullable=False),
        sa.Column("class_map_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("number", name="pk_ds_pools"),
    )


def downgrade() -> None:
    for table in ("ds_pools", "ds_contributions", "ds_versions", "ds_samples", "ds_datasets", "ds_images"):
        op.drop_table(table)
