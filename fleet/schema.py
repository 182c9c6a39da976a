"""The hub's and the plant's tables, beside the gateway's, the catalog's and the review app's in one database.

On the hub:

- ``fl_plants``: each plant, its tenant and the SHA-256 of its client certificate (the only credential it
  has); a revoked plant is refused at once. Keyed by plant, not tenant: a call is matched to its plant before
  its tenant is known (the hub's own check guards it, as the review app's does for its users).
- ``fl_bundles``: every bundle signed for a tenant, numbered per tenant; never rewritten.
- ``fl_policies``: what each tenant allows its plants to send up; append-only, the newest in force.
- ``fl_parts`` / ``fl_decisions``: the parts and QA decisions plants sent, keyed by plant and the plant's own
  record or decision id, so a re-sent one is recognised; append-only.

On a plant:

- ``fl_plant_sent``: the parts and decisions the hub has acknowledged (a re-scan skips them).
- ``fl_plant_cursors``: how far each kind has been scanned (a scan starts a safety window before it).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from lineqa.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

plants = Table(
    "fl_plants",
    metadata,
    Column("plant_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("cert_sha256", String(64), nullable=False, unique=True),
    Column("added_by", String(128), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"]),
)

bundles = Table(
    "fl_bundles",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("content_sha256", String(64), nullable=False),
    Column("manifest", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "number"),
)

policies = Table(
    "fl_policies",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("policy_json", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"]),
)

parts = Table(
    "fl_parts",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("plant_id", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("line_id", String(128), nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("part_id", String(256), nullable=False),
    Column("capture_time", DateTime(timezone=True)),
    Column("receive_time", DateTime(timezone=True), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("model_version", Integer, nullable=False),
    Column("recipe_id", String(128), nullable=False),
    Column("recipe_version", String(64), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("defects_json", Text, nullable=False),
    Column("image_sha256", String(64), nullable=False),
    Column("image_ext", String(8)),  # set when the image may come up (the policy allows it and the plant kept it)
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "plant_id", "record_id"),
)

decisions = Table(
    "fl_decisions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("plant_id", String(64), nullable=False),
    Column("decision_id", BigInteger, nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("boxes_json", Text, nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "plant_id", "decision_id"),
)

plant_sent = Table(
    "fl_plant_sent",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item_id", String(64), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "kind", "item_id"),
)

plant_cursors = Table(
    "fl_plant_cursors",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("scanned_to", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "kind"),
)

APPEND_ONLY = ("fl_bundles", "fl_policies", "fl_parts", "fl_decisions")
TENANT_TABLES = ("fl_bundles", "fl_policies", "fl_parts", "fl_decisions", "fl_plant_sent", "fl_plant_cursors")
