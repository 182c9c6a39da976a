"""Alembic environment: migrations run on the connection :func:`lineqa.db.open_database` hands over (no ini
file, no URL here), so the gateway, ``lineqa admin`` and the tests all migrate the same way."""

from __future__ import annotations

from alembic import context

from lineqa.serving.schema import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    include_name=lambda name, kind, _: kind != "table" or not (name or "").startswith("ds_"),
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
