"""``lineqa review``: the QA review and labelling web app, and its users.

    lineqa review user add alice --role acme:admin        # asks for the password (or --password-stdin)
    lineqa review user grant bob acme qa                   # roles: operator, labeller, qa, admin
    lineqa review user revoke bob acme qa
    lineqa review user disable bob
    lineqa review user list acme
    lineqa review expert invite carol acme --role qa --scope line:press-3 --scope dataset:reviewed \
        --expires 2026-12-31 [--new-user]                  # an outside expert, scoped, until that day (UTC)
    lineqa review expert invite dana acme --role qa --scope run:acme-pcb-20261130 --expires 2026-12-31
                                                           # a training run of acme's own dataset, read-only
    lineqa review expert list acme
    lineqa review expert revoke acme --user carol          # or --grant ID; ends it at the next request
    lineqa review serve --port 8443                        # HTTPS with <home>/pki/server.pem by default

    lineqa review remote login https://qa.plant:8443 --user carol --ca ca.pem   # from another machine
    lineqa review remote queue acme --status all           # JSON lines; also part, image, decide, datasets,
                                                           # export, runs, run, whoami, logout ('remote --help')

The app uses the same database (``--db`` or ``<home>/lineqa.db``: records, recipe versions) and image store
(``<home>/images``) as ``lineqa serve``, and shows the training runs of ``<home>/runs`` read-only (a run
belongs to the tenant whose dataset it trained on; a pool's or cluster's run to none). It serves HTTPS; plain
HTTP only with ``--insecure-http`` (local use: session cookies then lose their Secure flag). An invited expert
works in the web app and with ``lineqa review remote``, a client of the running app that signs in as the expert
(or a member) and calls the app's own routes for JSON, so exactly the same grants apply and every request is in
the tenant's audit trail (scopes: queue, line:ID, recipe:ID, dataset:NAME, run:NAME). The ``user`` and
``expert`` commands are the plant admin's and act on the whole database, so they have no per-user scope. The
app logs one JSON line per request and per decision (who, what, status, time) on standard error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine

from lineqa.db import database_url
from lineqa.home import default_home, env_default
from lineqa.review import app_log, remote_cli
from lineqa.review.auth import Role, UserStore
from lineqa.review.database import open_review_database
from lineqa.review.errors import ReviewError
from lineqa.review.experts import EXPERT_ROLES, ExpertGrants, check_invitation, check_runs, parse_expiry, parse_scope
from lineqa.review.runs import TrainingRuns


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument(
        "--db", default=env_default("LINEQA_DB"), help="database URL (default: $LINEQA_DB, else <home>/lineqa.db)"
    )
    area = parser.add_subparsers(dest="area", required=True, metavar="ACTION")

    serve = area.add_parser("serve", help="run the web app")
    serve.add_argument(
        "--host",
        default=env_default("LINEQA_HOST", "127.0.0.1"),
        help="address to listen on (default: $LINEQA_HOST, else loopback)",
    )
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate (default: <home>/pki/server.pem if present)")
    serve.add_argument("--tls-key", type=Path, help="PEM key of --tls-cert")
    serve.add_argument("--insecure-http", action="store_true", help="plain HTTP, for local use only")
    serve.add_argument("--images", type=Path, help="image store (default: <home>/images)")
    serve.add_argument("--models", type=Path, help="model repository, for class names (default: <home>/models)")
    serve.add_argument("--dataset", default="reviewed", help="working dataset reviewed parts go into")
    serve.add_argument("--pass-sample", type=float, default=5.0,
                       help="percent of PASS parts shown in the queue (default 5; at most the gateway's --pass-sample, "
                       "which keeps their images)")  # fmt: skip
    serve.add_argument("--timezone", default="UTC", help="the plant's time zone for days and shifts")
    serve.add_argument("--shifts", default="early=6-14,late=14-22,night=22-6", help="name=START-END,...")

    user = area.add_parser("user", help="users and their roles per tenant").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user")
    add.add_argument("username")
    add.add_argument("--role", action="append", default=[], metavar="TENANT:ROLE", help="grant a role (repeatable)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    for name in ("grant", "revoke"):
        change = user.add_parser(name, help=f"{name} a role in a tenant")
        change.add_argument("username")
        change.add_argument("tenant")
        change.add_argument("role", choices=[r.value for r in Role])
    disable = user.add_parser("disable", help="stop a user signing in (ends their sessions)")
    disable.add_argument("username")
    listing = user.add_parser("list", help="users of a tenant")
    listing.add_argument("tenant")

    expert = area.add_parser("expert", help="outside experts invited into a tenant, scoped and until a date")
    experts = expert.add_subparsers(dest="action", required=True)
    invite = experts.add_parser("invite", help="grant a user a role on chosen parts or datasets until a date")
    invite.add_argument("username")
    invite.add_argument("tenant")
    invite.add_argument("--role", required=True, choices=[r.value for r in EXPERT_ROLES])
    invite.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                        help="queue, line:ID, recipe:ID, dataset:NAME or run:NAME (repeatable; a run of the "
                        "tenant's own dataset, with --role qa)")  # fmt: skip
    invite.add_argument("--expires", required=True, help="YYYY-MM-DD (ends with that UTC day) or a date-time")
    invite.add_argument("--new-user", action="store_true", help="create the user's account first (asks a password)")
    invite.add_argument("--password-stdin", action="store_true", help="with --new-user: the password from stdin")
    expert_list = experts.add_parser("list", help="a tenant's grants: active, expired and revoked")
    expert_list.add_argument("tenant")
    revoke = experts.add_parser("revoke", help="end a grant, or all of a user's grants in the tenant, at once")
    revoke.add_argument("tenant")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--grant", type=int, help="a grant id (from 'expert list')")
    which.add_argument("--user", help="every live grant of this user in the tenant")

    remote_cli.configure(area.add_parser("remote", help="the review app from another machine (members and experts)"))


def _role(text: str) -> tuple[str, Role]:
    tenant, _, role = text.partition(":")
    try:
        return tenant, Role(role)
    except ValueError:
        raise ReviewError(f"--role {text!r}: expected TENANT:ROLE with ROLE one of {[r.value for r in Role]}") from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ReviewError("the passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    if args.area == "remote":  # a client of a running app: no home, no database here
        return remote_cli.run(args)
    home = args.home or default_home()
    url = database_url(home, args.db)
    if args.area == "serve":
        return _serve(args, home, url)
    engine = open_review_database(url)
    if args.area == "expert":
        return _experts(args, engine, home)
    users = UserStore(engine)
    if args.action == "add":
        roles = [_role(r) for r in args.role]
        users.add_user(args.username, _password(args.password_stdin))
        for tenant, role in roles:
            users.grant(args.username, tenant, role)
        print(f"added {args.username}" + "".join(f", {role.value} in {tenant}" for tenant, role in roles))
    elif args.action in ("grant", "revoke"):
        changed = getattr(users, args.action)(args.username, args.tenant, Role(args.role))
        print(f"{args.action} {args.role} in {args.tenant} for {args.username}: {'done' if changed else 'no change'}")
    elif args.action == "disable":
        users.set_disabled(args.username, True)
        print(f"disabled {args.username}")
    else:
        found = users.users(args.tenant)
        print(json.dumps([{"user": u.username, "roles": [r.value for _, r in u.roles], "disabled": u.disabled}
                          for u in found], indent=2))  # fmt: skip
    return 0


def _experts(args: argparse.Namespace, engine: Engine, home: Path) -> int:
    grants = ExpertGrants(engine, TrainingRuns(home / "runs"))
    by = f"cli:{getpass.getuser()}"
    if args.action == "invite":
        scope = [parse_scope(text) for text in args.scope]
        expires_at = parse_expiry(args.expires)
        check_invitation(args.tenant, Role(args.role), scope, expires_at)
        check_runs(args.tenant, scope, grants.runs)
        if args.new_user:
            UserStore(engine).add_user(args.username, _password(args.password_stdin))
        made = grants.invite(args.tenant, args.username, Role(args.role), scope, expires_at, by)
        print(json.dumps([g.describe() for g in made], indent=2))
    elif args.action == "revoke":
        ended = grants.revoke(args.tenant, by, grant_id=args.grant, username=args.user)
        print(json.dumps([g.describe() | {"status": "revoked"} for g in ended], indent=2))
    else:
        at = datetime.now(timezone.utc)
        print(json.dumps([g.describe() | {"status": g.status(at).value} for g in grants.grants(args.tenant)],
                         indent=2))  # fmt: skip
    return 0


def _serve(args: argparse.Namespace, home: Path, url: str) -> int:
    import uvicorn

    from lineqa.review.app import ReviewSettings, create_app
    from lineqa.serving.pki import PlantPki

    cert, key = args.tls_cert, args.tls_key
    if (cert is None) != (key is None):
        raise ReviewError("give both --tls-cert and --tls-key")
    if cert is None and not args.insecure_http:
        pki = PlantPki(home / "pki")
        if not pki.server_cert.is_file():
            raise ReviewError("no TLS certificate: give --tls-cert/--tls-key, run 'lineqa admin pki init', "
                              "or use --insecure-http for local use")  # fmt: skip
        cert, key = pki.server_cert, pki.server_key
    models = args.models or home / "models"
    settings = ReviewSettings(
        database_url=url,
        images=args.images or home / "images",
        models=models if models.is_dir() else None,
        runs=home / "runs",
        dataset=args.dataset,
        pass_sample_percent=args.pass_sample,
        secure_cookies=not args.insecure_http,
        timezone=args.timezone,
        shifts=args.shifts,
    )
    app_log.install()  # one JSON line per request and per decision on standard error
    app = create_app(settings)
    scheme = "http" if args.insecure_http else "https"
    print(f"lineqa review on {scheme}://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, ssl_certfile=cert, ssl_keyfile=key, log_level="warning",
                access_log=False)  # fmt: skip
    return 0
