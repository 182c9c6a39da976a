"""Alembic environment of the hub and plant roles: runs on the connection :func:`lineqa.db.open_database` hands
over, with their own version table, beside the other parts' tables in the same database."""

from __future__ import annotations

from alembic import context

from lineqa.fleet.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    include_name=lambda name, kind, _: kind != "table" or (name or "").startswith("fl_"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
