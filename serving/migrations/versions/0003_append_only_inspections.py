"""Inspection records are append-only: the original verdict can never be updated or deleted.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from lineqa.append_only import allow_changes, refuse_changes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    refuse_changes(op, ["inspections"])


def downgrade() -> None:
    allow_changes(op, ["inspections"])
