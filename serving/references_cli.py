"""``lineqa references``: a tenant's golden samples, the reference images recipes name.

    lineqa references add --tenant acme golden-pcb-top.png   # prints the id: the file's SHA-256
    lineqa references add --tenant acme - < golden.png       # from standard input (e.g. through kubectl exec -i)
    lineqa references list --tenant acme

A recipe names a reference by that id (``reference: {image: <id>}``); ``lineqa recipes set`` refuses a recipe
whose reference its tenant has not added, and a gateway judging it reads the image from this home.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lineqa.home import default_home
from lineqa.serving.references import ReferenceUnavailableError, references_of


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="validate an image (JPEG or PNG) and store it; print its id")
    add.add_argument("--tenant", required=True)
    add.add_argument(
        "file", type=Path, help="the golden sample: a good part, photographed as on the line ('-': standard input)"
    )
    listing = sub.add_parser("list", help="the tenant's references: id and size")
    listing.add_argument("--tenant", required=True)


def run(args: argparse.Namespace) -> int:
    store = references_of(args.home or default_home())
    if args.action == "add":
        try:
            data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
        except OSError as exc:
            raise ReferenceUnavailableError(f"{args.file}: cannot read: {exc.strerror or exc}") from exc
        print(store.add(args.tenant, data))
    else:
        for reference_id, header in store.ids(args.tenant):
            print(f"{reference_id}  {header.width}x{header.height} {header.encoding.value}")
    return 0
