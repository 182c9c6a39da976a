"""``lineqa recipes``: a tenant's product recipes, every version kept with who set it, when and why.

    lineqa recipes set acme/pcb-top recipe.yaml --reason "tighter pin-hole threshold after 8D #112"
    lineqa recipes show acme/pcb-top            # the YAML in force (acme/pcb-top@2: that version)
    lineqa recipes history acme/pcb-top         # every version: number, content hash, when, who, why
    lineqa recipes diff acme/pcb-top 1 2        # what changed between two versions (default: to the one in force)
    lineqa recipes list acme

A running gateway judges with a new version from about a second after it is set; every result names the
content hash of the version that judged it. Going back is setting an older version's text again
(``show acme/pcb-top@1 > old.yaml``, then ``set``): the history keeps that too.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from lineqa.home import default_home, env_default
from lineqa.serving.database import database_url, open_database
from lineqa.serving.promotions import current_user
from lineqa.serving.recipes import RecipeRef, RecipeStore, parse_ref
from lineqa.serving.references import references_of
from lineqa.vision.errors import RecipeError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--db", default=env_default("LINEQA_DB"), help="database URL (default: <home>/lineqa.db)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = sub.add_parser("set", help="validate a recipe YAML and store it as the recipe's next version")
    put.add_argument("recipe", help="<tenant>/<recipe id>")
    put.add_argument("file", help="the YAML file ('-': standard input)")
    put.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    put.add_argument("--by", default="", help="who (default: the user name)")
    show = sub.add_parser("show", help="a version's YAML as it was set (default: the version in force)")
    show.add_argument("recipe", help="<tenant>/<recipe id>[@<version>]")
    history = sub.add_parser("history", help="every version: number, hash, when, who, why")
    history.add_argument("recipe", help="<tenant>/<recipe id>")
    history.add_argument("--json", action="store_true")
    diff = sub.add_parser("diff", help="unified diff between two versions")
    diff.add_argument("recipe", help="<tenant>/<recipe id>")
    diff.add_argument("old", type=int, help="version number")
    diff.add_argument("new", type=int, nargs="?", help="version number (default: the version in force)")
    listing = sub.add_parser("list", help="a tenant's recipes and the version in force of each")
    listing.add_argument("tenant")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    engine = open_database(database_url(home, args.db))
    store = RecipeStore(engine)
    try:
        if args.action == "set":
            text = sys.stdin.read() if args.file == "-" else _read(Path(args.file))
            by, references = args.by or current_user(), references_of(home)
            version, new = store.set(parse_ref(args.recipe), text, by=by, reason=args.reason, references=references)
            state = "set" if new else "unchanged: the version in force has this content already"
            print(f"{version.ref} {state} (sha256 {version.sha256[:12]})")
        elif args.action == "show":
            sys.stdout.write(store.version(parse_ref(args.recipe)).yaml)
        elif args.action == "history":
            versions = store.history(parse_ref(args.recipe))
            if not versions:
                raise RecipeError(f"no recipe {args.recipe!r}")
            for v in versions:
                row = {"version": v.number, "sha256": v.sha256, "set_at": v.set_at.isoformat(), "set_by": v.set_by,
                       "reason": v.reason}  # fmt: skip
                line = f"@{v.number:<4} {v.sha256[:12]}  {row['set_at']}  {v.set_by}: {v.reason}"
                print(json.dumps(row) if args.json else line)
        elif args.action == "diff":
            ref = parse_ref(args.recipe)
            before = store.version(RecipeRef(ref.tenant, ref.recipe_id, args.old))
            after = store.version(RecipeRef(ref.tenant, ref.recipe_id, args.new))
            lines = before.yaml.splitlines(keepends=True), after.yaml.splitlines(keepends=True)
            sys.stdout.writelines(difflib.unified_diff(*lines, str(before.ref), str(after.ref)))
        else:
            for recipe_id, number in store.ids(args.tenant):
                print(f"{args.tenant}/{recipe_id}@{number}")
    finally:
        engine.dispose()
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc}") from exc
