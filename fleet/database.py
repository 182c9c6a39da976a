"""The hub's and the plant's database: every part's schema (the gateway's tenants, recipes and records, the
catalog, the review app's decisions) and this part's own tables (:mod:`lineqa.fleet.schema`), migrated on open
with their own version table, in one database (``<home>/lineqa.db`` or a PostgreSQL URL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy import Engine

from lineqa import db
from lineqa.fleet.errors import FleetError
from lineqa.home import env_default
from lineqa.review.database import open_review_database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "fleet_alembic_version"


def open_fleet_database(url: str) -> Engine:
    """An engine on ``url`` with every part's schema current (this part's tables refer to the gateway's)."""
    open_review_database(url).dispose()
    try:
        return db.open_database(url, MIGRATIONS, VERSION_TABLE)
    except db.DatabaseOpenError as exc:
        raise FleetError(str(exc)) from exc


def home_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """``--home`` and ``--db`` of the hub's or the plant's commands, each documented by its module."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--home", type=Path, help=f"the {role}'s lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--db", default=env_default("LINEQA_DB"), help="database URL (default: <home>/lineqa.db)")
