"""``lineqa hub``: the hub that serves many plants, and its admin.

    lineqa admin pki init --host hub.example.com      # the hub's CA (its key beside the home) and certificate
    lineqa admin tenant add acme                       # tenants, recipes and models as on any home
    lineqa hub plant add press-shop --tenant acme --hub hub.example.com:50061 --out press-shop.enrolment
    lineqa hub policy set acme --flagged-parts --decisions --images FAIL,REVIEW --reason "8D #112 data"
    lineqa hub serve --host 0.0.0.0                    # mutual TLS on port 50061
    lineqa hub bundle show acme                        # what acme's plants get now (signed when one asks for it)
    lineqa hub plant revoke press-shop                 # its next call is refused

The hub's home holds the model registry (``lineqa models publish``/``promote`` there), the tenants' recipes
(``lineqa recipes set`` there), the datasets the plants' parts land in, and the hub's bundle-signing key
(``<home>/hub/bundle-signing.key``, made the first time it is needed). ``plant add`` needs the CA's key
(``--ca-dir``, default ``<home>-ca``); ``serve`` does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.fleet.bundles import HubBundles
from lineqa.fleet.database import home_arguments, open_fleet_database
from lineqa.fleet.enrolment import bundle_key_path, enrol, write_enrolment
from lineqa.fleet.errors import EnrolmentError, FleetError
from lineqa.fleet.hub_ingest import HubIngest
from lineqa.fleet.hub_service import HubSettings, create_hub_server, serve_until_signal
from lineqa.fleet.manifest import Manifest
from lineqa.fleet.plants import PlantRegistry
from lineqa.fleet.policy import DataPolicy, PolicyStore
from lineqa.fleet.signing import signing_key
from lineqa.home import default_home, env_default
from lineqa.serving.database import database_url
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pki import PlantPki
from lineqa.serving.promotions import current_user

DEFAULT_PORT = 50061


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    home_arguments(parser, "hub")
    area = parser.add_subparsers(dest="area", required=True, metavar="AREA")

    serve = area.add_parser("serve", help="serve the plants (mutual TLS)")
    serve.add_argument("--host", default=env_default("LINEQA_HOST", "127.0.0.1"), help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--models", type=Path, help="model repository (default: <home>/models)")
    serve.add_argument("--images", type=Path, help="image store (default: <home>/images)")
    serve.add_argument("--max-wait-s", type=float, default=60.0, help="the longest a plant's long poll is held")
    serve.add_argument("--recheck-s", type=float, default=5.0,
                       help="how often a held long poll looks for changed recipes and grants (default 5)")  # fmt: skip

    plant = area.add_parser("plant", help="the plants").add_subparsers(dest="action", required=True)
    add = plant.add_parser("add", help="issue a plant's certificate and write its enrolment file")
    add.add_argument("plant", help="the plant's name (lower case, digits, '-', '_')")
    add.add_argument("--tenant", required=True)
    add.add_argument("--hub", required=True, help="host:port the plant reaches the hub at (a name in its certificate)")
    add.add_argument("--out", type=Path, help="the enrolment file (default: ./<plant>.enrolment; owner-only)")
    add.add_argument("--ca-dir", type=Path, help="where the CA key is kept (default: <home>-ca, beside the home)")
    add.add_argument("--by", default="", help="who adds it (default: the user name)")
    plant.add_parser("list", help="every plant, its tenant and whether it is revoked")
    revoke = plant.add_parser("revoke", help="refuse the plant from its next call")
    revoke.add_argument("plant")

    policy = area.add_parser("policy", help="what a tenant's plants may send up").add_subparsers(
        dest="action", required=True
    )
    put = policy.add_parser("set", help="put a data policy in force for a tenant (audited)")
    put.add_argument("tenant")
    put.add_argument("--flagged-parts", action="store_true", help="records of FAIL and REVIEW parts")
    put.add_argument("--decisions", action="store_true", help="QA decisions, with the records of their parts")
    put.add_argument("--images", default="", help="verdicts whose images may go up, e.g. FAIL,REVIEW (default none)")
    put.add_argument("--dataset", default=DataPolicy.dataset, help=f"the dataset they land in ({DataPolicy.dataset})")
    put.add_argument("--reason", required=True)
    put.add_argument("--by", default="")
    show = policy.add_parser("show", help="the policy in force and every change")
    show.add_argument("tenant")

    bundle = area.add_parser("bundle", help="a tenant's bundle").add_subparsers(dest="action", required=True)
    bundle.add_parser("show", help="what the tenant's plants get now: its bundle's manifest").add_argument("tenant")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    engine = open_fleet_database(database_url(home, args.db))
    try:
        if args.area == "serve":
            return _serve(args, home, engine)
        if args.area == "plant":
            return _plant(args, home, engine)
        if args.area == "policy":
            return _policy(args, engine)
        return _bundle(args, home, engine)
    finally:
        engine.dispose()


def _serve(args: argparse.Namespace, home: Path, engine: Engine) -> int:
    pki = PlantPki(home / "pki")
    if not (pki.server_cert.is_file() and pki.server_key.is_file()):
        raise FleetError(f"no hub certificate in {pki.root}: run 'lineqa admin pki init --host <hub name>' first")
    settings = HubSettings(host=args.host, port=args.port, tls_cert=pki.server_cert.read_bytes(),
                           tls_key=pki.server_key.read_bytes(), client_ca=pki.ca_cert.read_bytes(),
                           max_wait_s=args.max_wait_s, recheck_s=args.recheck_s)  # fmt: skip
    repository = ModelRepository(args.models or home / "models")
    bundles = HubBundles(engine, repository, signing_key(bundle_key_path(home)))
    policies = PolicyStore(engine)
    ingest = HubIngest(engine, ContentStore(args.images or home / "images"), policies)

    async def serve() -> None:
        hub = create_hub_server(PlantRegistry(engine), bundles, ingest, policies, settings)
        print(f"lineqa hub listening on {settings.host}:{hub.port} (mutual TLS)", file=sys.stderr, flush=True)
        await serve_until_signal(hub, settings.grace_s)

    asyncio.run(serve())
    return 0


def _bundle(args: argparse.Namespace, home: Path, engine: Engine) -> int:
    """The tenant's newest bundle, or what its next one will hold (signed when a plant first asks for it)."""
    bundles = HubBundles(engine, ModelRepository(home / "models"), signing_key(bundle_key_path(home)))
    content, latest = bundles.content(args.tenant), bundles.latest(args.tenant)
    if latest is not None and latest.content_sha256 == content.digest():
        print(json.dumps(Manifest.from_bytes(latest.manifest).model_dump(mode="json"), indent=2))
    else:
        number = (latest.number if latest else 0) + 1
        print(json.dumps({"number": number, "signed": False, "content": content.model_dump(mode="json")}, indent=2))
    return 0


def _plant(args: argparse.Namespace, home: Path, engine: Engine) -> int:
    registry = PlantRegistry(engine)
    if args.action == "add":
        out = args.out or Path(f"{args.plant}.enrolment")
        if out.exists():  # checked before the plant is registered: its key must not be lost
            raise EnrolmentError(f"{out} exists already: choose another --out")
        enrolment = enrol(home, engine, args.plant, args.tenant, args.hub, by=args.by or current_user(),
                          ca_dir=args.ca_dir)  # fmt: skip
        write_enrolment(enrolment, out)
        print(f"plant {args.plant} of {args.tenant} added; its enrolment file is {out}: it holds the plant's key, "
              f"carry it like a password, run 'lineqa plant join {out.name}' on the plant, then delete it")  # fmt: skip
    elif args.action == "revoke":
        plant = registry.revoke(args.plant)
        print(f"plant {plant.plant_id} of {plant.tenant_id} revoked")
    else:
        for plant in registry.all():
            state = f"revoked {plant.revoked_at:%Y-%m-%d}" if plant.revoked_at else "active"
            print(f"{plant.plant_id}\t{plant.tenant_id}\t{state}\tcertificate sha256 {plant.cert_sha256[:16]}...")
    return 0


def _policy(args: argparse.Namespace, engine: Engine) -> int:
    store = PolicyStore(engine)
    if args.action == "set":
        verdicts = frozenset(v.strip().upper() for v in args.images.split(",") if v.strip())
        wanted = DataPolicy(args.flagged_parts, verdicts, args.decisions, args.dataset)
        policy = store.set(args.tenant, wanted, by=args.by or current_user(), reason=args.reason)
        print(f"{args.tenant}: {policy.describe()}")
        return 0
    print(f"{args.tenant}: {store.in_force(args.tenant).describe()}")
    for change in store.history(args.tenant):
        print(f"  {change.set_at.isoformat()} by {change.set_by}: {change.policy.describe()} ({change.reason})")
    return 0
