"""The gateway database's tables: who may send frames (tenants, lines, cameras, camera tokens), what was
judged (inspection records), the recipes it judged with and the platform models each tenant may use. One schema
for SQLite and PostgreSQL; Alembic migrations (``serving/migrations``) create and evolve it, and a test checks
that they produce exactly these tables.

``inspections``, ``recipe_versions`` and ``model_grants`` are append-only: triggers refuse UPDATE and DELETE
(RELIABILITY.md 10), so an original verdict or a past recipe can never be rewritten. On PostgreSQL every table
here has row-level security by tenant (:mod:`lineqa.row_security`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from lineqa.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("display_name", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

lines = Table(
    "lines",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("line_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "line_id"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"]),
)

cameras = Table(
    "cameras",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("line_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "camera_id"),
    ForeignKeyConstraint(["tenant_id", "line_id"], ["lines.tenant_id", "lines.line_id"]),
)

# A token is shown once when issued; only the SHA-256 of its secret part is stored (the secret is 256 random
# bits, so a plain hash cannot be brute-forced and a slow password hash would only add latency per call).
camera_tokens = Table(
    "camera_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id", "camera_id"], ["cameras.tenant_id", "cameras.camera_id"]),
)


def _frame_columns() -> list[Column[Any]]:
    """Which frame a row is about, and when it came: what a verdict record and an attempt share."""
    return [
        Column("record_id", String(36), primary_key=True),
        Column("tenant", String(64), nullable=False),
        Column("line_id", String(128), nullable=False),
        Column("camera_id", String(128), nullable=False),
        Column("sequence", BigInteger, nullable=False),
        Column("part_id", String(256), nullable=False, default=""),
        Column("capture_time", DateTime(timezone=True)),
        Column("receive_time", DateTime(timezone=True), nullable=False),
    ]


inspections = Table(
    "inspections",
    metadata,
    *_frame_columns(),
    Column("model_name", String(128), nullable=False, default=""),
    Column("model_version", Integer, nullable=False, default=0),
    Column("recipe_id", String(128), nullable=False, default=""),
    Column("recipe_version", String(64), nullable=False, default=""),
    Column("image_sha256", String(64), nullable=False, default=""),
    Column("image_key", String(512)),
    Column("verdict", String(8), nullable=False),
    Column("error_code", String(48), nullable=False, default=""),
    Column("defects_json", Text, nullable=False, default="[]"),
    Column("service_version", String(64), nullable=False),
    Column("result", LargeBinary, nullable=False),
    UniqueConstraint("tenant", "camera_id", "sequence", name="uq_inspections_frame"),
)

# Every version of every recipe, never rewritten: the newest number is the version in force. ``sha256`` is the
# recipe's content version (what records name); ``yaml`` the text as it was set, comments included.
recipe_versions = Table(
    "recipe_versions",
    metadata,
    Column("tenant_id", String(64), nullable=False),
    Column("recipe_id", String(128), nullable=False),
    Column("number", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("yaml", Text, nullable=False),
    Column("set_by", String(128), nullable=False),
    Column("set_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("tenant_id", "recipe_id", "number"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"]),
)

# Which tenants may use which platform model (one without a tenant prefix): allow and revoke events, never
# rewritten; the newest event for a (tenant, model) decides.
model_grants = Table(
    "model_grants",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("model_name", String(128), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("granted_by", String(128), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"]),
)

APPEND_ONLY = ("inspections", "recipe_versions", "model_grants", "inspection_attempts")

# Every frame that could not be judged (an ERROR result), one row per attempt: a part's history is complete
# even when it was judged later, or never. Its record id is the one the ERROR result names.
inspection_attempts = Table(
    "inspection_attempts",
    metadata,
    *_frame_columns(),
    Column("recipe_id", String(128), nullable=False, default=""),
    Column("image_sha256", String(64), nullable=False, default=""),
    Column("error_code", String(48), nullable=False),
    Column("error_message", Text, nullable=False, default=""),
    Column("service_version", String(64), nullable=False),
    Index("ix_inspection_attempts_frame", "tenant", "camera_id", "sequence"),
)

# One row the health check writes every period: proof that the store takes writes (RELIABILITY.md 4).
health_probes = Table(
    "health_probes",
    metadata,
    Column("probe_id", String(64), primary_key=True),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)
