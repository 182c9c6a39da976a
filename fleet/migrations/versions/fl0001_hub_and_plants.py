"""Hub and plants: registered plants, signed bundles, data policies, the parts and decisions plants sent; on a
plant, what the hub has acknowledged and how far each kind was scanned.

Revision ID: fl0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from lineqa import row_security as rls
from lineqa.append_only import allow_changes, refuse_changes

revision = "fl0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY = ("fl_bundles", "fl_policies", "fl_parts", "fl_decisions")
PLANT_STATE = ("fl_plant_sent", "fl_plant_cursors")


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "fl_plants",
        sa.Column("plant_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("cert_sha256", sa.String(64), nullable=False),
        sa.Column("added_by", sa.String(128), nullable=False),
        _when("added_at"),
        _when("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("plant_id", name="pk_fl_plants"),
        sa.UniqueConstraint("cert_sha256", name="uq_fl_plants_cert_sha256"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_fl_plants_tenant_id_tenants"),
    )
    op.create_table(
        "fl_bundles",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("tenant_id", "number", name="pk_fl_bundles"),
    )
    op.create_table(
        "fl_policies",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("policy_json", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(128), nullable=False),
        _when("set_at"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_fl_policies"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name="fk_fl_policies_tenant_id_tenants"),
    )
    op.create_table(
        "fl_parts",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("plant_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("part_id", sa.String(256), nullable=False),
        _when("capture_time", nullable=True),
        _when("receive_time"),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("recipe_id", sa.String(128), nullable=False),
        sa.Column("recipe_version", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("defects_json", sa.Text(), nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_ext", sa.String(8), nullable=True),
        _when("received_at"),
        sa.PrimaryKeyConstraint("tenant_id", "plant_id", "record_id", name="pk_fl_parts"),
    )
    op.create_table(
        "fl_decisions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("plant_id", sa.String(64), nullable=False),
        sa.Column("decision_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("boxes_json", sa.Text(), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        _when("decided_at"),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("received_at"),
        sa.PrimaryKeyConstraint("tenant_id", "plant_id", "decision_id", name="pk_fl_decisions"),
    )
    op.create_table(
        "fl_plant_sent",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        _when("sent_at"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "item_id", name="pk_fl_plant_sent"),
    )
    op.create_table(
        "fl_plant_cursors",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _when("scanned_to"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", name="pk_fl_plant_cursors"),
    )
    refuse_changes(op, APPEND_ONLY)
    rls.create_app_role(op)
    rls.grant(op, "SELECT", ["fleet_alembic_version", "fl_plants"])
    rls.grant(op, "SELECT, INSERT", APPEND_ONLY)
    rls.grant(op, "SELECT, INSERT, UPDATE", PLANT_STATE)
    for table in (*APPEND_ONLY, *PLANT_STATE):
        rls.isolate(op, table)


def downgrade() -> None:
    rls.release(op, [*APPEND_ONLY, *PLANT_STATE, "fl_plants", "fleet_alembic_version"])
    allow_changes(op, APPEND_ONLY)
    for table in (*PLANT_STATE, *APPEND_ONLY, "fl_plants"):
        op.drop_table(table)
