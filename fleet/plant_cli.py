"""``lineqa plant``: a plant joined to a hub, following its tenant's models and sending its parts up.

    lineqa plant join press-shop.enrolment        # once: the hub's CA, this plant's certificate, the bundle key
    lineqa plant sync                             # keeps following (run it beside 'lineqa serve'), until stopped
    lineqa plant sync --once                      # one round now: newest bundle, then the data the policy allows
    lineqa plant status                           # the hub, the bundle on the line, what was sent

``sync`` writes into the same home as ``lineqa serve``: the bundles' models into ``<home>/models`` (the
gateway's supervisor puts a promoted version on the line with no failed frame), the recipes into the database
as audited versions. It reads the gateway's records and images and the review app's decisions to send up.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from lineqa.db import tenant_scope
from lineqa.fleet.database import home_arguments, open_fleet_database
from lineqa.fleet.enrolment import read_enrolment
from lineqa.fleet.errors import FleetError
from lineqa.fleet.plant_link import ChannelSettings, PlantLink, join
from lineqa.fleet.plant_models import installed_manifest
from lineqa.fleet.plant_sync import PlantSync, SyncSettings
from lineqa.fleet.schema import plant_sent
from lineqa.home import default_home
from lineqa.serving.database import database_url


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    home_arguments(parser, "plant")
    action = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    joining = action.add_parser("join", help="join the hub with the enrolment file 'lineqa hub plant add' wrote")
    joining.add_argument("enrolment", type=Path)
    joining.add_argument("--hub", help="host:port of the hub, if not the one in the file")
    sync = action.add_parser("sync", help="follow the tenant's bundles and send parts up")
    sync.add_argument("--once", action="store_true", help="one round of each now, then exit (1 if the hub failed)")
    sync.add_argument("--hub", help="host:port of the hub, if not the one joined with")
    sync.add_argument("--wait-s", type=float, default=SyncSettings.wait_s, help="long poll for a newer bundle")
    sync.add_argument("--upload-period-s", type=float, default=SyncSettings.upload_period_s,
                      help="how often parts go up (default 60)")  # fmt: skip
    sync.add_argument("--retry-max-s", type=float, default=SyncSettings.retry_max_s,
                      help="the longest wait between tries while the hub is unreachable (default 60)")  # fmt: skip
    sync.add_argument("--keepalive-s", type=float, default=ChannelSettings.keepalive_s,
                      help="ping the hub this often; unanswered for --keepalive-timeout-s, the link drops")  # fmt: skip
    sync.add_argument("--keepalive-timeout-s", type=float, default=ChannelSettings.keepalive_timeout_s)
    sync.add_argument("--models", type=Path, help="model repository (default: <home>/models)")
    sync.add_argument("--images", type=Path, help="image store (default: <home>/images)")
    status = action.add_parser("status", help="the hub, the bundle installed, what was sent")
    status.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    if args.action == "join":
        engine = open_fleet_database(database_url(home, args.db))
        try:
            link = join(home, read_enrolment(args.enrolment), engine, args.hub)
        finally:
            engine.dispose()
        print(f"{home} is plant {link.plant} of tenant {link.tenant}, hub {link.hub}; delete {args.enrolment} now "
              "(it holds this plant's key, which is in the home now)")  # fmt: skip
        return 0
    if args.action == "status":
        return _status(args, home)
    channel = ChannelSettings(args.keepalive_s, args.keepalive_timeout_s)
    settings = SyncSettings(wait_s=args.wait_s, upload_period_s=args.upload_period_s, retry_max_s=args.retry_max_s,
                            channel=channel, hub=args.hub, db_url=args.db, models=args.models,
                            images=args.images)  # fmt: skip
    sync = PlantSync(home, settings)
    try:
        if args.once:
            try:
                outcome, report = sync.once()
            except FleetError as exc:
                print(f"lineqa plant sync: {exc}", file=sys.stderr)
                return 1
            print(outcome.summary)
            print(f"sent {report.new_parts} parts, {report.new_decisions} decisions, {report.images} images; "
                  f"{report.known} already on the hub; {report.refused} refused ({report.policy})")  # fmt: skip
            return 0
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        print(f"lineqa plant sync: plant {sync.link.plant} of {sync.link.tenant}, hub {settings.hub or sync.link.hub}",
              file=sys.stderr, flush=True)  # fmt: skip
        sync.run(stop)
    finally:
        sync.close()
    return 0


def _status(args: argparse.Namespace, home: Path) -> int:
    link = PlantLink.of(home)
    manifest = installed_manifest(link)
    engine = open_fleet_database(database_url(home, args.db))
    try:
        s = plant_sent.c
        with tenant_scope(engine, link.tenant).connect() as conn:
            rows = conn.execute(select(s.kind, func.count()).where(s.tenant_id == link.tenant).group_by(s.kind))
            sent: dict[str, int] = {kind: int(count) for kind, count in rows}
    finally:
        engine.dispose()
    data: dict[str, Any] = {
        "hub": link.hub, "plant": link.plant, "tenant": link.tenant,
        "bundle": manifest.number if manifest else None,
        "models": {m.name: m.on_line for m in manifest.content.models} if manifest else {},
        "recipes": {r.recipe_id: r.sha256[:12] for r in manifest.content.recipes} if manifest else {},
        "sent": {"parts": sent.get("part", 0), "decisions": sent.get("decision", 0)},
    }  # fmt: skip
    if args.json:
        print(json.dumps(data))
        return 0
    print(f"plant {link.plant} of tenant {link.tenant}, hub {link.hub}")
    if manifest is None:
        print("no bundle installed yet")
    else:
        lineup = ", ".join(f"{name} v{version}" for name, version in data["models"].items()) or "no models"
        print(f"bundle #{manifest.number} ({manifest.created_at}): {lineup}; recipes {', '.join(data['recipes'])}")
    print(f"sent so far: {data['sent']['parts']} parts, {data['sent']['decisions']} decisions")
    return 0
