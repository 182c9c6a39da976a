"""Sample references: a sample may name a golden sample (a defect-free image of the same design) among its
tenant's images. A column of ``ds_samples`` rather than a table of its own: a sample has at most one reference,
and the row it lives in is already the tenant's alone under row-level security (ds0002), so nothing new needs
a policy. Existing samples get none.

Revision ID: ds0004
Revises: ds0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ds0004"
down_revision = "ds0003"
branch_labels = None
depends_on = None

FOREIGN_KEY = "fk_ds_samples_reference_sha256_ds_images"


def upgrade() -> None:
    with op.batch_alter_table("ds_samples") as batch:
        batch.add_column(sa.Column("reference_sha256", sa.String(64), nullable=True))
        batch.create_foreign_key(FOREIGN_KEY, "ds_images", ["tenant_id", "reference_sha256"], ["tenant_id", "sha256"])


def downgrade() -> None:
    with op.batch_alter_table("ds_samples") as batch:
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch.drop_column("reference_sha256")
