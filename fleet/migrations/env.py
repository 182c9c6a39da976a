"""Alembic environment of the hub and plant roles: their own version table and ``fl_`` tables, beside the other
parts' in the same database (:func:`lineqa.db.run_migrations`)."""

from __future__ import annotations

from lineqa.db import run_migrations
from lineqa.fleet.schema import metadata

run_migrations(metadata, "fl_")
