"""Alembic environment of the dataset catalog: runs on the connection :func:`lineqa.db.open_database` hands
over, with the catalog's own version table, beside the gateway's tables in the same database."""

from __future__ import annotations

from alembic import context

from lineqa.datasets.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    include_name=lambda name, kind, _: kind != "table" or (name or "").startswith("ds_"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
