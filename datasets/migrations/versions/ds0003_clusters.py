"""Clusters: named groups of tenants with their own consented pool. Contributions and pools get the pool they
belong to (``cluster``, ``""`` for the platform's), pools are numbered per cluster, and a withdrawal records
who withdrew. On PostgreSQL a tenant sees its own memberships, and the platform pool plus the pools of the
clusters it is a member of now; nothing of another cluster, not even that it exists.

Revision ID: ds0003
Revises: ds0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lineqa import row_security as rls

revision = "ds0003"
down_revision = "ds0002"
branch_labels = None
depends_on = None

# The platform pool, and a cluster's pools for its current members (ds_cluster_members is itself isolated,
# so the subquery sees the transaction's tenant's memberships only).
POOL_VISIBLE = (
    "cluster = '' OR cluster IN (SELECT m.cluster FROM ds_cluster_members m "
    f"WHERE {rls.tenant_is('m.tenant_id')} AND m.removed_at IS NULL)"
)


def upgrade() -> None:
    op.create_table(
        "ds_clusters",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_ds_clusters"),
    )
    op.create_table(
        "ds_cluster_members",
        sa.Column("membership_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_by", sa.String(128), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("membership_id", name="pk_ds_cluster_members"),
    )
    with op.batch_alter_table("ds_contributions") as batch:
        batch.add_column(sa.Column("withdrawn_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("cluster", sa.String(64), nullable=False, server_default=""))
    with op.batch_alter_table("ds_pools") as batch:
        batch.add_column(sa.Column("cluster", sa.String(64), nullable=False, server_default=""))
        batch.drop_constraint("pk_ds_pools", type_="primary")
        batch.create_primary_key("pk_ds_pools", ["cluster", "number"])
    rls.grant(op, "SELECT", ["ds_cluster_members"])  # tenants read their memberships; the platform writes them
    rls.isolate(op, "ds_cluster_members")
    rls.restrict_reads(op, "ds_pools", "visible", POOL_VISIBLE)


def downgrade() -> None:
    rls.release(op, ["ds_cluster_members"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY ds_pools_visible ON ds_pools")
        op.execute("ALTER TABLE ds_pools DISABLE ROW LEVEL SECURITY")
    op.execute("DELETE FROM ds_pools WHERE cluster <> ''")
    with op.batch_alter_table("ds_pools") as batch:
        batch.drop_constraint("pk_ds_pools", type_="primary")
        batch.create_primary_key("pk_ds_pools", ["number"])
        batch.drop_column("cluster")
    op.execute("DELETE FROM ds_contributions WHERE cluster <> ''")
    with op.batch_alter_table("ds_contributions") as batch:
        batch.drop_column("cluster")
        batch.drop_column("withdrawn_by")
    op.drop_table("ds_cluster_members")
    op.drop_table("ds_clusters")
