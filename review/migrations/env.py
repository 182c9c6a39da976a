"""Alembic environment of the review app: runs on the connection :func:`lineqa.db.open_database` hands over,
with the review app's own version table, beside the gateway's and the catalog's tables."""

from __future__ import annotations

from alembic import context

from lineqa.review.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    include_name=lambda name, kind, _: kind != "table" or (name or "").startswith("rv_"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
