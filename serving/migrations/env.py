"""Alembic environment: migrations run on the connection :func:`serving.database.migrate` hands over (no ini
file, no URL here), so the gateway, ``lineqa admin db upgrade`` and the tests all migrate the same way."""

from __future__ import annotations

from alembic import context

from serving.schema import metadata

context.configure(
    connection=context.config.attributes["connection"], target_metadata=metadata, render_as_batch=True
)
with context.begin_transaction():
    context.run_migrations()
