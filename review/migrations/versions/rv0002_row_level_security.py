"""PostgreSQL row-level security on the review app's tenant tables (decisions, audit trail). Users, their
memberships and sessions are keyed by person, not tenant: signing in must find a user's roles in every tenant,
so the app's own checks guard them (:mod:`lineqa.review.access`).

Revision ID: rv0002
Revises: rv0001
"""

from __future__ import annotations

from alembic import op

from lineqa import row_security as rls

revision = "rv0002"
down_revision = "rv0001"
branch_labels = None
depends_on = None

TENANT_TABLES = ("rv_decisions", "rv_audit_log")
PEOPLE_TABLES = ("rv_users", "rv_memberships", "rv_sessions")


def upgrade() -> None:
    rls.create_app_role(op)
    rls.grant(op, "SELECT", ["review_alembic_version"])
    rls.grant(op, "SELECT, INSERT", TENANT_TABLES)
    rls.grant(op, "SELECT, INSERT, UPDATE, DELETE", PEOPLE_TABLES)
    for table in TENANT_TABLES:
        rls.isolate(op, table)


def downgrade() -> None:
    rls.release(op, [*TENANT_TABLES, *PEOPLE_TABLES, "review_alembic_version"])
