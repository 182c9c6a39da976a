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

import sqlalchemy as sa

from lineqa.db import NAMING_CONVENTION
from lineqa.serving.schema import tenants  # the gateway's: a plant and a policy belong to a tenant of it

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def _text(name: str, length: int | None = 64, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length) if length else sa.Text, nullable=nullable)


def _number(name: str, kind: type[sa.Integer] = sa.Integer) -> sa.Column:
    return sa.Column(name, kind, nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


plants = sa.Table(
    "fl_plants",
    metadata,
    sa.Column("plant_id", sa.String(64), primary_key=True),
    _text("tenant_id"),
    sa.Column("cert_sha256", sa.String(64), nullable=False, unique=True),
    _text("added_by", 128),
    _time("added_at"),
    _time("revoked_at", nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], [tenants.c.tenant_id]),
)

bundles = sa.Table(
    "fl_bundles",
    metadata,
    _text("tenant_id"),
    _number("number"),
    _text("content_sha256"),
    sa.Column("manifest", sa.LargeBinary, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    _time("created_at"),
    sa.PrimaryKeyConstraint("tenant_id", "number"),
)

policies = sa.Table(
    "fl_policies",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    _text("tenant_id"),
    _text("policy_json", None),
    _text("set_by", 128),
    _time("set_at"),
    _text("reason", None),
    sa.ForeignKeyConstraint(["tenant_id"], [tenants.c.tenant_id]),
)

parts = sa.Table(
    "fl_parts",
    metadata,
    _text("tenant_id"),
    _text("plant_id"),
    _text("record_id"),
    _text("line_id", 128),
    _text("camera_id", 128),
    _number("sequence", sa.BigInteger),
    _text("part_id", 256),
    _time("capture_time", nullable=True),
    _time("receive_time"),
    _text("model_name", 128),
    _number("model_version"),
    _text("recipe_id", 128),
    _text("recipe_version"),
    _text("verdict", 8),
    _text("defects_json", None),
    _text("image_sha256"),
    _text("image_ext", 8, nullable=True),  # set when the image may come up (the policy allows it, the plant kept it)
    _time("received_at"),
    sa.PrimaryKeyConstraint("tenant_id", "plant_id", "record_id"),
)

decisions = sa.Table(
    "fl_decisions",
    metadata,
    _text("tenant_id"),
    _text("plant_id"),
    _number("decision_id", sa.BigInteger),
    _text("record_id"),
    _text("kind", 16),
    _text("boxes_json", None),
    _text("reviewer", 128),
    _time("decided_at"),
    _text("reason", None),
    _time("received_at"),
    sa.PrimaryKeyConstraint("tenant_id", "plant_id", "decision_id"),
)

# kind: "part" (item: the record id) or "decision" (item: the decision id)
plant_sent = sa.Table(
    "fl_plant_sent", metadata, _text("tenant_id"), _text("kind", 16), _text("item_id"), _time("sent_at"),
    sa.PrimaryKeyConstraint("tenant_id", "kind", "item_id"),
)  # fmt: skip

plant_cursors = sa.Table(
    "fl_plant_cursors", metadata, _text("tenant_id"), _text("kind", 16), _time("scanned_to"),
    sa.PrimaryKeyConstraint("tenant_id", "kind"),
)  # fmt: skip
