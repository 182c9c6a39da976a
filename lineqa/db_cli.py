"""``lineqa db``: the database's owner brings every part's schema up to date, once, before the services start.

    lineqa db migrate --db postgresql+psycopg://lineqa@db/lineqa --app-password-file app-password.txt
    LINEQA_DB_OWNER=... LINEQA_APP_DB_PASSWORD=... lineqa db migrate --app-password-env LINEQA_APP_DB_PASSWORD

With PostgreSQL the services log in as ``lineqa_app``, the application role the migrations create: it owns
nothing and sees one tenant per transaction (:mod:`lineqa.row_security`), so it cannot migrate. The owner
runs this (a Compose or Kubernetes job before the services); ``--app-password-file`` (or ``-env``, the name of
an environment variable holding it) sets the application role's password, sent to the server already hashed
(SCRAM-SHA-256) so that it is in no server log. SQLite needs none of this: every command migrates its home's
database when it opens it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lineqa.home import default_home, env_default


class DbCommandError(Exception):
    """The database command cannot do what was asked."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument(
        "--db", default=env_default("LINEQA_DB_OWNER"), help="the owner's database URL (default: $LINEQA_DB_OWNER)"
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = sub.add_parser("migrate", help="bring every part's schema to the newest migration")
    password = migrate.add_mutually_exclusive_group()
    password.add_argument("--app-password-file", type=Path, help="set the application role's password from a file")
    password.add_argument("--app-password-env", metavar="NAME", help="... from this environment variable")


def run(args: argparse.Namespace) -> int:
    from psycopg import sql

    from lineqa.db import database_url
    from lineqa.fleet.database import open_fleet_database  # every part's: gateway, catalog, review app, hub/plant
    from lineqa.row_security import APP_ROLE

    password = _app_password(args)
    engine = open_fleet_database(database_url(args.home or default_home(), args.db))
    try:
        if password is not None:
            if engine.dialect.name != "postgresql":
                raise DbCommandError("the application role's password is for PostgreSQL: SQLite has no roles")
            with engine.begin() as conn:
                driver = conn.connection.driver_connection  # psycopg: the verifier is made client-side
                if driver is None:
                    raise DbCommandError("the database connection was closed")
                verifier = driver.pgconn.encrypt_password(password.encode(), APP_ROLE.encode(), b"scram-sha-256")
                statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
                driver.execute(statement.format(sql.Identifier(APP_ROLE), sql.Literal(verifier.decode())))
        print(f"{engine.url!r}: every schema is current" + (f"; {APP_ROLE}'s password set" if password else ""))
    finally:
        engine.dispose()
    return 0


def _app_password(args: argparse.Namespace) -> str | None:
    password: str
    if args.app_password_file:
        password = Path(args.app_password_file).read_text(encoding="utf-8").strip()
    elif args.app_password_env:
        password = os.environ.get(args.app_password_env, "").strip()
    else:
        return None
    if len(password) < 16:
        raise DbCommandError("the application role's password must have at least 16 characters")
    return password
