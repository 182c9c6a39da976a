"""PostgreSQL row-level security on the catalog's tenant tables; pools (the platform's, built from consented
contributions) stay readable, written only by the platform.

Revision ID: ds0002
Revises: ds0001
"""

from __future__ import annotations

from alembic import op

from lineqa import row_security as rls

revision = "ds0002"
down_revision = "ds0001"
branch_labels = None
depends_on = None

TENANT_TABLES = ("ds_images", "ds_datasets", "ds_samples", "ds_versions", "ds_contributions")


def upgrade() -> None:
    rls.create_app_role(op)
    rls.grant(op, "SELECT", ["datasets_alembic_version", "ds_pools"])
    rls.grant(op, "SELECT, INSERT, UPDATE, DELETE", TENANT_TABLES)
    for table in TENANT_TABLES:
        rls.isolate(op, table)


def downgrade() -> None:
    rls.release(op, [*TENANT_TABLES, "ds_pools", "datasets_alembic_version"])
