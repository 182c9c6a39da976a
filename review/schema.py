"""The review app's tables, beside the gateway's and the catalog's in the same database.

- ``rv_users`` / ``rv_memberships``: people who sign in, and their roles per tenant (deny by default: a user
  with no membership in a tenant sees nothing of it).
- ``rv_sessions``: signed-in sessions; only the SHA-256 of the cookie's random id is stored, with the
  session's CSRF token.
- ``rv_decisions``: what QA decided about an inspected part (append-only; the gateway's ``inspections`` row,
  the original verdict, is never written by this app).
- ``rv_audit_log``: who did what when, old and new value and why (append-only; triggers refuse UPDATE and
  DELETE on both append-only tables).
- ``rv_expert_grants``: what a tenant lets an invited outside expert (a user without a membership there) see
  and do: one row per scope item (the whole queue, a line, a recipe or a dataset), with a role, an expiry and,
  once revoked, when and by whom (:mod:`lineqa.review.experts`).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from lineqa.db import NAMING_CONVENTION

metadata = MetaData(naming_convention=NAMING_CONVENTION)

users = Table(
    "rv_users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
)

memberships = Table(
    "rv_memberships",
    metadata,
    Column("user_id", Integer, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    PrimaryKeyConstraint("user_id", "tenant_id", "role"),
    ForeignKeyConstraint(["user_id"], ["rv_users.user_id"]),
)

sessions = Table(
    "rv_sessions",
    metadata,
    Column("session_sha256", String(64), primary_key=True),
    Column("user_id", Integer, nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["user_id"], ["rv_users.user_id"]),
)

decisions = Table(
    "rv_decisions",
    metadata,
    Column("decision_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("record_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("boxes_json", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("dataset", String(128)),
    Column("sample", String(512)),
    Index("ix_rv_decisions_tenant_id_record_id", "tenant_id", "record_id"),
)

audit_log = Table(
    "rv_audit_log",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("object", String(600), nullable=False),
    Column("old_json", Text, nullable=False),
    Column("new_json", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_rv_audit_log_tenant_id_at", "tenant_id", "at"),
)

expert_grants = Table(
    "rv_expert_grants",
    metadata,
    Column("grant_id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("user_id", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", String(128), nullable=False),
    Column("granted_by", String(128), nullable=False),
    Column("granted_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(128)),
    ForeignKeyConstraint(["user_id"], ["rv_users.user_id"]),
    Index("ix_rv_expert_grants_user_id", "user_id"),
    Index("ix_rv_expert_grants_tenant_id", "tenant_id"),
)

APPEND_ONLY = ("rv_decisions", "rv_audit_log")
