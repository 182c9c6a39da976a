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


def _text(name: str, length: int | None = 64, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length) if length else sa.Text(), nullable=nullable)


def _number(name: str, kind: type[sa.Integer] = sa.Integer) -> sa.Column:
    return sa.Column(name, kind(), nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _tenants_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=f"fk_{table}_tenant_id_tenants")


def upgrade() -> None:
    op.create_table(
        "fl_plants",
        _text("plant_id"), _text("tenant_id"), _text("cert_sha256"), _text("added_by", 128), _time("added_at"),
        _time("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("plant_id", name="pk_fl_plants"),
        sa.UniqueConstraint("cert_sha256", name="uq_fl_plants_cert_sha256"),
        _tenants_fk("fl_plants"),
    )  # fmt: skip
    op.create_table(
        "fl_bundles",
        _text("tenant_id"), _number("number"), _text("content_sha256"),
        sa.Column("manifest", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False), _time("created_at"),
        sa.PrimaryKeyConstraint("tenant_id", "number", name="pk_fl_bundles"),
    )  # fmt: skip
    op.create_table(
        "fl_policies",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        _text("tenant_id"), _text("policy_json", None), _text("set_by", 128), _time("set_at"), _text("reason", None),
        sa.PrimaryKeyConstraint("event_id", name="pk_fl_policies"),
        _tenants_fk("fl_policies"),
    )  # fmt: skip
    op.create_table(
        "fl_parts",
        _text("tenant_id"), _text("plant_id"), _text("record_id"), _text("line_id", 128), _text("camera_id", 128),
        _number("sequence", sa.BigInteger), _text("part_id", 256), _time("capture_time", nullable=True),
        _time("receive_time"), _text("model_name", 128), _number("model_version"), _text("recipe_id", 128),
        _text("recipe_version"), _text("verdict", 8), _text("defects_json", None), _text("image_sha256"),
        _text("image_ext", 8, nullable=True), _time("received_at"),
        sa.PrimaryKeyConstraint("tenant_id", "plant_id", "record_id", name="pk_fl_parts"),
    )  # fmt: skip
    op.create_table(
        "fl_decisions",
        _text("tenant_id"), _text("plant_id"), _number("decision_id", sa.BigInteger), _text("record_id"),
        _text("kind", 16), _text("boxes_json", None), _text("reviewer", 128), _time("decided_at"),
        _text("reason", None), _time("received_at"),
        sa.PrimaryKeyConstraint("tenant_id", "plant_id", "decision_id", name="pk_fl_decisions"),
    )  # fmt: skip
    op.create_table(
        "fl_plant_sent",
        _text("tenant_id"), _text("kind", 16), _text("item_id"), _time("sent_at"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "item_id", name="pk_fl_plant_sent"),
    )  # fmt: skip
    op.create_table(
        "fl_plant_cursors",
        _text("tenant_id"), _text("kind", 16), _time("scanned_to"),
        sa.PrimaryKeyConstraint("tenant_id", "kind", name="pk_fl_plant_cursors"),
    )  # fmt: skip
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
