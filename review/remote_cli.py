"""``lineqa review remote``: the review app from a terminal on another machine, for members and invited experts
alike, under exactly the access the web app gives them (:mod:`lineqa.review.remote`).

    lineqa review remote login https://qa.plant:8443 --user carol --ca plant-ca.pem   # asks for the password
    lineqa review remote whoami                            # the user, tenants and roles (or grants) there
    lineqa review remote queue acme --status all           # one JSON line per part, every page
    lineqa review remote part acme RECORD_ID               # one part as JSON
    lineqa review remote image acme RECORD_ID -o part.jpg
    lineqa review remote decide acme RECORD_ID confirm|false_alarm|correct [--boxes JSON] [--reason TEXT]
    lineqa review remote datasets acme                     # JSON
    lineqa review remote export acme pareto [--days 30] [-o pareto.csv]
    lineqa review remote runs acme                         # training runs, JSON
    lineqa review remote run acme NAME                     # one run's record and metrics, JSON
    lineqa review remote logout

Commands use the session of the last ``login`` unless ``--url`` names another. Sessions are kept in
``$XDG_CONFIG_HOME/lineqa/review-session.json`` (mode 0600; ``--session-file`` for another).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from lineqa.review.remote import SESSION_FILE, RemoteError, ReviewClient, SessionFile, config_dir, path_of

DECISION_KINDS = ("confirm", "false_alarm", "correct")
QUEUE_FILTERS = ("line", "camera", "class", "verdict", "model", "since", "until", "status", "order")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--url", help="the review app (default: the last one logged in to)")
    parser.add_argument("--session-file", type=Path,
                        help=f"where sessions are kept (default: $XDG_CONFIG_HOME/lineqa/{SESSION_FILE})")  # fmt: skip
    action = parser.add_subparsers(dest="remote", required=True, metavar="COMMAND")

    login = action.add_parser("login", help="sign in and keep the session")
    login.add_argument("login_url", metavar="URL", help="https://HOST[:PORT] of 'lineqa review serve'")
    login.add_argument("--user", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.add_argument("--ca", type=Path, help="PEM CA file to trust the app's certificate (the plant's CA)")
    action.add_parser("logout", help="end the session on the app and forget it here")
    action.add_parser("whoami", help="the signed-in user, their tenants and roles (JSON)")

    queue = action.add_parser("queue", help="the review queue, one JSON line per part")
    queue.add_argument("tenant")
    for name in QUEUE_FILTERS:
        queue.add_argument(f"--{name}", help="as the queue page's filter of that name")
    queue.add_argument("--limit", type=int, help="at most this many parts (default: every page)")
    part = action.add_parser("part", help="one part: record, defects, decisions (JSON)")
    part.add_argument("tenant")
    part.add_argument("record_id")
    image = action.add_parser("image", help="download a part's image")
    image.add_argument("tenant")
    image.add_argument("record_id")
    image.add_argument("-o", "--output", type=Path, help="file to write (default: RECORD_ID.<ext> here)")
    decide = action.add_parser("decide", help="record a QA decision on a part")
    decide.add_argument("tenant")
    decide.add_argument("record_id")
    decide.add_argument("kind", choices=DECISION_KINDS)
    decide.add_argument("--boxes", default="", help='with correct: [{"class": "open", "box": [x1, y1, x2, y2]}]')
    decide.add_argument("--reason", default="")
    datasets = action.add_parser("datasets", help="the tenant's datasets and versions (JSON)")
    datasets.add_argument("tenant")
    export = action.add_parser("export", help="a dashboard table as CSV")
    export.add_argument("tenant")
    export.add_argument("table", help="e.g. pareto, defect-rate (as the dashboard's CSV links)")
    export.add_argument("--days", type=int, default=30)
    export.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    runs = action.add_parser("runs", help="the tenant's training runs (JSON)")
    runs.add_argument("tenant")
    run_one = action.add_parser("run", help="one training run: record, metrics, pictures (JSON)")
    run_one.add_argument("tenant")
    run_one.add_argument("name")


def run(args: argparse.Namespace) -> int:
    sessions = SessionFile(args.session_file or config_dir(os.environ) / SESSION_FILE)
    if args.remote == "login":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
        ca = str(args.ca.resolve()) if args.ca else None
        session = ReviewClient(args.login_url, ca).login(args.user, password, ca)
        sessions.put(session)
        print(f"signed in to {session.url} as {session.user}", file=sys.stderr)
        return 0
    session = sessions.get(args.url)
    client = ReviewClient.of(session)
    if args.remote == "logout":
        client.logout()
        sessions.remove(session.url)
        print(f"signed out of {session.url}", file=sys.stderr)
        return 0
    tenant = getattr(args, "tenant", "")
    if args.remote == "whoami":
        me = client.get_json("/", what="who am I")
        _print({"url": session.url, "user": me["user"], "tenants": me["tenants"]})
    elif args.remote == "queue":
        _queue(client, args)
    elif args.remote == "part":
        _print(client.get_json(path_of("t", tenant, "parts", args.record_id), what=f"part {args.record_id}"))
    elif args.remote == "image":
        reply = client.get_bytes(path_of("t", tenant, "parts", args.record_id, "image"),
                                 what=f"image of part {args.record_id}")  # fmt: skip
        ext = {"image/jpeg": ".jpg", "image/png": ".png", "image/bmp": ".bmp", "image/tiff": ".tif",
               "image/webp": ".webp"}.get(reply.headers.get_content_type(), "")  # fmt: skip
        target = args.output or Path(f"{args.record_id}{ext}")
        target.write_bytes(reply.body)
        print(f"wrote {target} ({len(reply.body)} bytes)", file=sys.stderr)
    elif args.remote == "decide":
        form = {"kind": args.kind, "boxes": args.boxes, "reason": args.reason, "then": "stay"}
        _print(client.post_json(path_of("t", tenant, "parts", args.record_id, "decisions"), form,
                                what=f"decide on part {args.record_id}"))  # fmt: skip
    elif args.remote == "datasets":
        _print(client.get_json(path_of("t", tenant, "datasets"), what=f"datasets of {tenant}"))
    elif args.remote == "export":
        reply = client.get_bytes(path_of("t", tenant, "export", f"{args.table}.csv"), {"days": str(args.days)},
                                 what=f"table {args.table}")  # fmt: skip
        if args.output:
            args.output.write_bytes(reply.body)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(reply.body.decode("utf-8"))
    elif args.remote == "runs":
        _print(client.get_json(path_of("t", tenant, "runs"), what=f"runs of {tenant}"))
    elif args.remote == "run":
        _print(client.get_json(path_of("t", tenant, "runs", args.name), what=f"run {args.name}"))
    else:  # pragma: no cover - argparse allows only the commands above
        raise RemoteError(f"unknown command {args.remote!r}")
    return 0


def _queue(client: ReviewClient, args: argparse.Namespace) -> None:
    params = {name: value for name in QUEUE_FILTERS if (value := getattr(args, name)) is not None}
    shown, page = 0, 1
    while args.limit is None or shown < args.limit:
        found = client.get_json(path_of("t", args.tenant, "queue"), {**params, "page": str(page)},
                                what=f"queue of {args.tenant}")  # fmt: skip
        for part in found["parts"]:
            if args.limit is not None and shown >= args.limit:
                break
            print(json.dumps(part, ensure_ascii=False), flush=False)
            shown += 1
        if not found["more"]:
            break
        page += 1


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
