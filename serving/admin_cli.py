"""``lineqa admin``: tenants, lines, cameras, camera tokens and the plant's certificate authority.

    lineqa admin pki init --host gateway.plant.local --host 10.0.0.5
    lineqa admin tenant add acme --name "Acme Stamping"
    lineqa admin line add acme press-3
    lineqa admin camera add acme press-3 cam-07
    lineqa admin token issue acme cam-07        # prints the token once; store it on the camera host
    lineqa admin token revoke <token id>
    lineqa admin migrate-home --tenant acme     # a home from before tenant-scoped recipes and models

Everything goes to the same database as ``lineqa serve`` (``--db`` or ``<home>/lineqa.db``), so a running
gateway sees new cameras at once and a revoked token within seconds. On PostgreSQL this is the plant admin's
tool, for the owner's login: listing every tenant and revoking by token id cross tenants.

The CA's private key goes to ``--ca-dir`` (default ``<home>-ca``, beside the home, never inside it): keep it
there, or on an admin machine; ``pki server`` and ``pki client`` need it, the gateway does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lineqa.home import default_home, env_default
from lineqa.serving.access import AccessStore
from lineqa.serving.database import database_url, open_database
from lineqa.serving.home_migration import HomeMigration, migrate_home
from lineqa.serving.pki import PlantPki


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument(
        "--db", default=env_default("LINEQA_DB"), help="database URL (default: $LINEQA_DB, else <home>/lineqa.db)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    area = parser.add_subparsers(dest="area", required=True, metavar="AREA")

    pki = area.add_parser("pki", help="the plant certificate authority and certificates").add_subparsers(
        dest="action", required=True
    )
    init = pki.add_parser("init", help="create the CA and the gateway's server certificate in <home>/pki")
    init.add_argument("--host", action="append", default=[], help="a name or IP the gateway is reached by")
    server = pki.add_parser("server", help="reissue the server certificate for other names")
    server.add_argument("--host", action="append", default=[], required=True)
    client = pki.add_parser("client", help="issue a client certificate for mutual TLS")
    client.add_argument("name")
    for step in (init, server, client):
        step.add_argument("--ca-dir", type=Path, help="where the CA key is kept (default: <home>-ca, beside the home)")

    migrate = area.add_parser("migrate-home", help="tenant-scoped recipes and models, the CA key out, private modes")
    migrate.add_argument("--tenant", required=True, help="the tenant the home's recipes and models belong to")
    migrate.add_argument("--models", choices=["tenant", "platform"], default="tenant",
                         help="models become the tenant's (default), or stay platform models it may use")  # fmt: skip
    migrate.add_argument("--ca-dir", type=Path, help="where the CA key goes (default: <home>-ca, beside the home)")

    tenant = area.add_parser("tenant", help="tenants (manufacturers)").add_subparsers(dest="action", required=True)
    add = tenant.add_parser("add")
    add.add_argument("tenant")
    add.add_argument("--name", default="", help="display name")
    tenant.add_parser("list")

    line = area.add_parser("line", help="production lines of a tenant").add_subparsers(dest="action", required=True)
    add = line.add_parser("add")
    add.add_argument("tenant")
    add.add_argument("line")

    camera = area.add_parser("camera", help="cameras on a line").add_subparsers(dest="action", required=True)
    add = camera.add_parser("add")
    add.add_argument("tenant")
    add.add_argument("line")
    add.add_argument("camera")
    listing = camera.add_parser("list")
    listing.add_argument("tenant", nargs="?")

    token = area.add_parser("token", help="camera tokens").add_subparsers(dest="action", required=True)
    issue = token.add_parser("issue", help="issue a token for a camera (printed once)")
    issue.add_argument("tenant")
    issue.add_argument("camera")
    revoke = token.add_parser("revoke")
    revoke.add_argument("token_id")
    listing = token.add_parser("list")
    listing.add_argument("tenant", nargs="?")


def _emit(args: argparse.Namespace, data: object, text: str) -> None:
    print(json.dumps(data, default=str) if args.json else text)


def _pki(args: argparse.Namespace, home: Path) -> int:
    pki = PlantPki(home / "pki", args.ca_dir)
    if args.action == "init":
        hosts = args.host or ["localhost", "127.0.0.1"]
        pki.init(hosts)
        _emit(args, {"ca": str(pki.ca_cert), "ca_key": str(pki.ca_key), "server_cert": str(pki.server_cert),
                     "hosts": hosts},
              f"CA: {pki.ca_cert} (give it to cameras); its key: {pki.ca_key} (keep it out of the gateway's "
              f"reach)\nserver certificate for {', '.join(hosts)}: {pki.server_cert}")  # fmt: skip
    elif args.action == "server":
        pki.server(args.host)
        _emit(args, {"server_cert": str(pki.server_cert), "hosts": args.host}, f"reissued {pki.server_cert}")
    else:
        cert, key = pki.client(args.name)
        _emit(args, {"cert": str(cert), "key": str(key)}, f"client certificate {cert}, key {key}")
    return 0


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    if args.area == "pki":
        return _pki(args, home)
    engine = open_database(database_url(home, args.db))
    try:
        if args.area == "migrate-home":
            plan = HomeMigration(args.tenant, models_as_tenant=args.models == "tenant")
            done = migrate_home(home, engine, plan, PlantPki(home / "pki", args.ca_dir))
            _emit(args, done, "\n".join(done) or "nothing to do")
            return 0
        store = AccessStore(engine)
        match (args.area, args.action):
            case ("tenant", "add"):
                store.add_tenant(args.tenant, args.name)
                _emit(args, {"tenant": args.tenant}, f"tenant {args.tenant} added")
            case ("tenant", "list"):
                rows = store.tenants()
                _emit(args, [{"tenant": t, "name": n} for t, n in rows], "\n".join(f"{t}\t{n}" for t, n in rows))
            case ("line", "add"):
                store.add_line(args.tenant, args.line)
                _emit(args, {"tenant": args.tenant, "line": args.line}, f"line {args.line} added to {args.tenant}")
            case ("camera", "add"):
                store.add_camera(args.tenant, args.line, args.camera)
                _emit(args, {"tenant": args.tenant, "line": args.line, "camera": args.camera},
                      f"camera {args.camera} added to {args.tenant}/{args.line}")  # fmt: skip
            case ("camera", "list"):
                cams = store.cameras(args.tenant)
                _emit(args, [{"tenant": t, "line": line, "camera": c} for t, line, c in cams],
                      "\n".join("\t".join(row) for row in cams))  # fmt: skip
            case ("token", "issue"):
                issued = store.issue_token(args.tenant, args.camera)
                print(f"token {issued.token_id} for camera {args.camera} of {args.tenant}; it is shown only now",
                      file=sys.stderr)  # fmt: skip
                _emit(args, {"token_id": issued.token_id, "token": issued.token}, issued.token)
            case ("token", "revoke"):
                store.revoke_token(args.token_id)
                _emit(args, {"revoked": args.token_id}, f"token {args.token_id} revoked")
            case ("token", "list"):
                tokens = store.tokens(args.tenant)
                _emit(args, [t.__dict__ for t in tokens], "\n".join(
                    f"{t.token_id}\t{t.tenant_id}\t{t.camera_id}\t{'revoked' if t.revoked_at else 'active'}"
                    for t in tokens))  # fmt: skip
    finally:
        engine.dispose()
    return 0
