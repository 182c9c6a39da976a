"""PostgreSQL row-level security on every gateway table, and the application role the services use.

Each table shows and accepts only the rows of the transaction's tenant. Checking a camera token happens before
the tenant is known: the transaction names the token instead, and sees that token's row and its camera.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from lineqa import row_security as rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# table -> its tenant column; the services only ever add rows to these (revoking a token is the plant admin's)
TENANT_TABLES = {
    "tenants": "tenant_id",
    "lines": "tenant_id",
    "cameras": "tenant_id",
    "camera_tokens": "tenant_id",
    "inspections": "tenant",
    "recipe_versions": "tenant_id",
    "model_grants": "tenant_id",
}
_TOKEN = f"current_setting('{rls.CAMERA_TOKEN_SETTING}', true)"


def upgrade() -> None:
    rls.create_app_role(op)
    rls.grant(op, "SELECT", ["alembic_version"])
    rls.grant(op, "SELECT, INSERT", TENANT_TABLES)
    for table, column in TENANT_TABLES.items():
        rls.isolate(op, table, column)
    rls.allow_read(op, "camera_tokens", "being_checked", f"token_id = {_TOKEN}")
    rls.allow_read(
        op,
        "cameras",
        "of_token_being_checked",
        f"EXISTS (SELECT 1 FROM camera_tokens t WHERE t.token_id = {_TOKEN} "
        "AND t.tenant_id = cameras.tenant_id AND t.camera_id = cameras.camera_id)",
    )


def downgrade() -> None:
    rls.release(op, [*TENANT_TABLES, "alembic_version"])
