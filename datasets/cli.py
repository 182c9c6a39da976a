"""``lineqa datasets``: import, check, count, split, version, diff, export and pool labelled defect images.

    lineqa datasets import acme/pcb ./labels --format auto      # YOLO, COCO, VOC, CVAT, Label Studio, DeepPCB
    lineqa datasets validate acme/pcb                           # or a folder/file before importing it
    lineqa datasets stats acme/pcb@2 --plot sizes.png
    lineqa datasets split acme/pcb --ratios train=0.8,val=0.2 --seed 0
    lineqa datasets snapshot acme/pcb --note "after review week 47"
    lineqa datasets diff acme/pcb@1 acme/pcb@2
    lineqa datasets export acme/pcb@2 --format yolo --out ./pcb-v2   # data.yaml ready for training
    lineqa datasets export acme/pcb@2 --input reference --out ./pcb-v2-ref  # (image, reference) model input
    lineqa datasets contribute acme/pcb@2 --by qa-lead@acme          # consent to pool; --withdraw revokes
    lineqa datasets pool --map scratches=scratch                     # a new pool version; export pool@N
    lineqa datasets clusters create automotive --by admin@hub        # a cluster of tenants with its own pool
    lineqa datasets clusters add-member automotive acme --by admin@hub   # remove-member, members, list
    lineqa datasets contribute acme/pcb@2 --cluster automotive --by qa-lead@acme
    lineqa datasets pool --cluster automotive                        # cluster/automotive@N, its members' only
    lineqa datasets synth ./synthetic --surface metal --count 200 --seed 1

A dataset is named ``<tenant>/<name>``; ``@<n>``, ``@latest`` or ``@<hash prefix>`` names a version, and no
version means the working dataset. Every command takes ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lineqa.content_store import ContentStore
from lineqa.datasets.catalog import Catalog, ImportRefusedError, parse_ref
from lineqa.datasets.clusters import (
    add_member,
    cluster_names,
    create_cluster,
    memberships,
    remove_member,
    tenant_clusters,
)
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.formats import READERS, WRITERS, Compose, detect_format
from lineqa.datasets.formats.deeppcb import read_deeppcb
from lineqa.datasets.manifest import Manifest, diff
from lineqa.datasets.model import ImportedDataset, LabelledImage
from lineqa.datasets.pool import build_pool
from lineqa.datasets.probe import probe_images
from lineqa.datasets.splits import assign_splits
from lineqa.datasets.stats import compute_stats, plot_box_sizes
from lineqa.datasets.stats import render_text as render_stats
from lineqa.datasets.synth import Surface, write_yolo_dataset
from lineqa.datasets.validate import render_text as render_report
from lineqa.datasets.validate import validate
from lineqa.datasets.versions import is_pool_ref, load_version
from lineqa.db import database_url
from lineqa.home import default_home
from lineqa.progress import ProgressBar


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--db", help="database URL (default: SQLite <home>/lineqa.db)")
    parser.add_argument("--images", type=Path, help="image store (default: <home>/images)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    formats = sorted(READERS)

    step = commands.add_parser("import", help="import labelled images into a tenant's working dataset")
    step.add_argument("dataset", help="<tenant>/<name>")
    step.add_argument("source", type=Path, help="folder or annotation file")
    step.add_argument("--format", choices=["auto", *formats], default="auto")
    step.add_argument("--prefix", default="", help="prepended to image names (to keep two sources apart)")
    step.add_argument(
        "--templates",
        action="store_true",
        help="DeepPCB: also import each defect-free template as a sample of its own, a good part (background "
        "image) in its board's group: hard negatives, and good boards to measure false rejects on",
    )
    step.add_argument(
        "--no-references",
        action="store_true",
        help="DeepPCB: do not attach each board's template as its reference (by default every defective "
        "board carries its template, the golden sample a reference model compares it with); combines "
        "with --templates, and a template is stored once either way",
    )
    step.add_argument(
        "--skip-bad",
        action="store_true",
        help="import what can be read, report the rest (default: a source with problems imports nothing)",
    )

    for name, text in (("validate", "report problems of a dataset, a version or files"), ("stats", "count")):
        step = commands.add_parser(name, help=text)
        step.add_argument(
            "target", help="<tenant>/<name>[@version], pool@<version>, cluster/<name>@<version>, or a folder/file"
        )
        step.add_argument("--format", choices=["auto", *formats], default="auto", help="for a folder or file")
        if name == "stats":
            step.add_argument("--plot", type=Path, help="write the box-size histogram to this PNG")

    step = commands.add_parser("split", help="assign train/val/test to the working dataset, group-aware")
    step.add_argument("dataset")
    step.add_argument("--ratios", default="train=0.8,val=0.2", help="e.g. train=0.7,val=0.2,test=0.1")
    step.add_argument("--seed", type=int, default=0)
    step.add_argument(
        "--group-by",
        choices=["group", "name"],
        default="group",
        help="keep images of one group (board, part, batch) together; 'name': each image alone",
    )

    step = commands.add_parser("snapshot", help="freeze the working dataset as an immutable version")
    step.add_argument("dataset")
    step.add_argument("--note", default="")

    step = commands.add_parser("versions", help="list a dataset's versions (or a tenant's datasets)")
    step.add_argument("dataset", help="<tenant>/<name>, or <tenant> for its datasets")

    step = commands.add_parser("diff", help="what changed between two versions")
    step.add_argument("old")
    step.add_argument("new")

    step = commands.add_parser("export", help="write a version as a YOLO or COCO dataset")
    step.add_argument("version", help="<tenant>/<name>@<version>, pool@<version> or cluster/<name>@<version>")
    step.add_argument("--format", choices=sorted(WRITERS), default="yolo")
    step.add_argument("--out", type=Path, required=True)
    step.add_argument("--overwrite", action="store_true")
    step.add_argument(
        "--input",
        choices=["image", "reference"],
        default="image",
        help="what a model is fed: 'image', each sample's image as stored; 'reference', the input a reference "
        "model takes, built by lineqa.vision.reference from the image and the sample's reference (written "
        "as PNG; every sample must have a reference)",
    )

    step = commands.add_parser("contribute", help="consent to put a version into future pools")
    step.add_argument("version")
    step.add_argument("--by", required=False, default="", help="who consents or withdraws (recorded)")
    step.add_argument("--withdraw", action="store_true", help="withdraw the consent for future pools")
    step.add_argument("--cluster", help="the cluster's pool (the tenant must be a member), not the platform's")

    step = commands.add_parser("pool", help="build a pool version from the standing contributions")
    step.add_argument("--map", action="append", default=[], metavar="FROM=TO", help="class name mapping")
    step.add_argument("--cluster", help="build cluster/<NAME>@N from its members' contributions")

    step = commands.add_parser("clusters", help="the platform admin's clusters of tenants, each with its own pool")
    cluster_actions = step.add_subparsers(dest="cluster_action", required=True, metavar="CLUSTER_ACTION")
    sub = cluster_actions.add_parser("create", help="a new cluster, without members")
    sub.add_argument("name")
    sub.add_argument("--by", required=True, help="who creates it (recorded)")
    for verb, text in (("add-member", "make a tenant a member"), ("remove-member", "end a tenant's membership")):
        sub = cluster_actions.add_parser(verb, help=text)
        sub.add_argument("name")
        sub.add_argument("tenant")
        sub.add_argument("--by", required=True, help="who decides it (recorded)")
    sub = cluster_actions.add_parser("members", help="a cluster's memberships, current and ended, with who/when")
    sub.add_argument("name")
    sub = cluster_actions.add_parser("list", help="every cluster, or the ones a tenant is a member of")
    sub.add_argument("--tenant", help="only the clusters this tenant is a member of now (what it may see)")

    step = commands.add_parser("synth", help="write a synthetic YOLO dataset of parts with labelled defects")
    step.add_argument("out", type=Path)
    step.add_argument("--surface", choices=[s.value for s in Surface], default="metal")
    step.add_argument("--count", type=int, default=200, help="training images")
    step.add_argument("--val", type=int, default=0, help="validation images (default: a fifth of --count)")
    step.add_argument("--size", type=int, default=320)
    step.add_argument("--seed", type=int, default=0)


class _Context:
    def __init__(self, args: argparse.Namespace) -> None:
        home = args.home or default_home()
        self.engine = open_catalog_database(database_url(home, args.db))
        self.store = ContentStore(args.images or home / "images")

    def catalog(self, tenant: str) -> Catalog:
        return Catalog(self.engine, self.store, tenant)

    def version(self, ref: str) -> tuple[Manifest, list[LabelledImage]]:
        """A version's manifest and its images as files; ``pool@N`` or ``cluster/<name>@N`` for a pool version."""
        return load_version(self.engine, self.store, ref)


def _read(source: Path, fmt: str) -> ImportedDataset:
    if not source.exists():
        raise DatasetError(f"{source} does not exist")
    return READERS[detect_format(source) if fmt == "auto" else fmt](source)


def _target(ctx: _Context, args: argparse.Namespace) -> tuple[list[str], list[LabelledImage], Callable[..., str]]:
    """(classes, images, source of an image) of a dataset reference, a version, or files on disk."""
    path = Path(args.target)
    if path.exists():
        imported = _read(path, args.format)
        _warn(imported.problems)
        return imported.classes, imported.images, lambda _: imported.format
    if is_pool_ref(args.target):
        manifest, images = ctx.version(args.target)
        return list(manifest.classes), images, lambda image: image.name.split("/")[0]
    tenant, name, version = parse_ref(args.target)
    catalog = ctx.catalog(tenant)
    if version is not None:
        manifest, images = ctx.version(args.target)
        return list(manifest.classes), images, lambda _: f"{tenant}/{name}@{version}"
    working = Manifest(tuple(catalog.classes(name)), tuple(catalog.working_samples(name)))
    sources = catalog.sources(name)
    return list(working.classes), catalog.labelled_images(working), lambda image: sources[image.name]


def _warn(problems: list[str], limit: int = 20) -> None:
    for problem in problems[:limit]:
        print(f"warning: {problem}", file=sys.stderr)
    if len(problems) > limit:
        print(f"warning: ... and {len(problems) - limit} more problems", file=sys.stderr)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _ratios(text: str) -> dict[str, float]:
    try:
        ratios = {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise DatasetError(f"--ratios {text!r} is not like train=0.8,val=0.2") from None
    if abs(sum(ratios.values()) - 1) > 1e-6 or min(ratios.values()) <= 0:
        raise DatasetError(f"--ratios {text!r} must be positive and add up to 1")
    return ratios


def run(args: argparse.Namespace) -> int:
    if args.action == "synth":
        val = args.val or max(1, args.count // 5)
        root = write_yolo_dataset(
            args.out, Surface(args.surface), train=args.count, val=val, seed=args.seed, size=args.size
        )
        _emit(args, {"data": str(root)}, f"wrote {args.count} + {val} {args.surface} parts; data file {root}")
        return 0
    ctx = _Context(args)
    try:
        return _ACTIONS[args.action](ctx, args)
    finally:
        ctx.engine.dispose()


def _import(ctx: _Context, args: argparse.Namespace) -> int:
    tenant, name, version = parse_ref(args.dataset)
    if version:
        raise DatasetError("import goes into the working dataset: name it without @version")
    fmt = detect_format(args.source) if args.format == "auto" and args.source.exists() else args.format
    for flag, given in (("--templates", args.templates), ("--no-references", args.no_references)):
        if given and fmt != "deeppcb":
            raise DatasetError(f"{flag} is for DeepPCB sources")
    if fmt == "deeppcb" and args.source.exists():
        imported = read_deeppcb(args.source, templates=args.templates, references=not args.no_references)
    else:
        imported = _read(args.source, fmt)
    progress = ProgressBar(f"importing {len(imported.images)} images")
    try:
        report = ctx.catalog(tenant).import_images(
            name, imported, prefix=args.prefix, progress=progress, skip_bad=args.skip_bad
        )
    except ImportRefusedError as exc:
        _warn(exc.problems)
        raise
    text = (
        f"{tenant}/{name}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{len(report.skipped)} skipped; classes: {', '.join(report.classes)}"
    )
    text += "".join(f"\n  skipped {reason}" for reason in report.skipped)
    _emit(args, asdict(report), text)
    return 0


def _validate(ctx: _Context, args: argparse.Namespace) -> int:
    classes, images, _ = _target(ctx, args)
    facts = probe_images(images, progress=ProgressBar(f"checking {len(images)} images"))
    report = validate(images, facts, classes)
    print(report.to_json() if args.json else render_report(report), end="" if not args.json else "\n")
    return 0 if report.ok else 1


def _stats(ctx: _Context, args: argparse.Namespace) -> int:
    classes, images, source_of = _target(ctx, args)
    facts = probe_images(images, progress=ProgressBar(f"reading {len(images)} images"))
    stats = compute_stats(images, facts, classes, source_of)
    if args.plot:
        plot_box_sizes(stats, args.plot, title=f"Box sizes: {args.target}")
    text = render_stats(stats) + (f"\nbox-size histogram: {args.plot}" if args.plot else "")
    _emit(args, stats.to_dict(), text)
    return 0


def _split(ctx: _Context, args: argparse.Namespace) -> int:
    tenant, name, version = parse_ref(args.dataset)
    if version:
        raise DatasetError("splits are assigned to the working dataset; snapshot it afterwards")
    ratios = _ratios(args.ratios)
    catalog = ctx.catalog(tenant)
    working = Manifest(tuple(catalog.classes(name)), tuple(catalog.working_samples(name)))
    images = catalog.labelled_images(working)
    group_of = (lambda image: image.group or image.name) if args.group_by == "group" else (lambda image: image.name)
    result = assign_splits(images, ratios, seed=args.seed, group_of=group_of)
    catalog.set_splits(name, dict(result.assignment))
    _emit(args, asdict(result.report), result.report.render_text())
    return 0


def _snapshot(ctx: _Context, args: argparse.Namespace) -> int:
    tenant, name, _ = parse_ref(args.dataset)
    info = ctx.catalog(tenant).snapshot(name, args.note)
    _emit(args, asdict(info), f"{tenant}/{name}@{info.number} ({info.images} images) manifest {info.sha256}")
    return 0


def _versions(ctx: _Context, args: argparse.Namespace) -> int:
    if "/" not in args.dataset:
        names = ctx.catalog(args.dataset).names()
        _emit(args, names, "\n".join(names))
        return 0
    tenant, name, _ = parse_ref(args.dataset)
    rows = ctx.catalog(tenant).versions(name)
    _emit(
        args,
        [asdict(v) for v in rows],
        "\n".join(
            f"@{v.number}\t{v.sha256[:12]}\t{v.images} images\t{v.created_at:%Y-%m-%d %H:%M}\t{v.note}" for v in rows
        ),
    )
    return 0


def _diff(ctx: _Context, args: argparse.Namespace) -> int:
    change = diff(ctx.version(args.old)[0], ctx.version(args.new)[0])
    lines = [f"{args.old} -> {args.new}: " + ("no change" if change.unchanged else "")]
    for field, values in change.to_json().items():
        if values:
            lines.append(
                f"  {field} ({len(values)}): " + ", ".join(map(str, values[:10])) + (" ..." if len(values) > 10 else "")
            )
    _emit(args, change.to_json(), "\n".join(lines))
    return 0


def _export(ctx: _Context, args: argparse.Namespace) -> int:
    compose = reference_input() if args.input == "reference" else None
    manifest, images = ctx.version(args.version)
    out = WRITERS[args.format](list(manifest.classes), images, args.out, overwrite=args.overwrite, compose=compose)
    _emit(
        args,
        {"out": str(out), "images": len(images), "manifest": manifest.sha256, "input": args.input},
        f"exported {len(images)} images of {args.version} ({manifest.sha256[:12]}) as {args.format} to {out}"
        + (" (reference model input)" if compose else ""),
    )
    return 0


def reference_input() -> Compose:
    """The vision core's ``model_input(frame, reference)``, imported only when asked for: the exporter must not
    know the encoding (training and inspection must build the very same input), and an installation without it
    should say so before anything is read or written."""
    try:
        compose: Compose = importlib.import_module("lineqa.vision.reference").model_input
    except (ImportError, AttributeError) as exc:
        raise DatasetError(
            f"reference input needs lineqa.vision.reference (its model_input(frame, reference)), which this "
            f"installation lacks: {exc}"
        ) from None
    return compose


def _contribute(ctx: _Context, args: argparse.Namespace) -> int:
    tenant, name, version = parse_ref(args.version)
    catalog = ctx.catalog(tenant)
    where = f"cluster {args.cluster}'s" if args.cluster else "the platform's"
    if args.withdraw:
        catalog.withdraw(name, version, by=args.by or tenant, cluster=args.cluster)
        _emit(
            args,
            {"withdrawn": args.version, "cluster": args.cluster},
            f"consent for {args.version} withdrawn: {where} future pools leave it out",
        )
        return 0
    if not version:
        raise DatasetError("contribute a version (<tenant>/<name>@<version>), not the working dataset")
    info = catalog.contribute(name, version, by=args.by or tenant, cluster=args.cluster)
    _emit(
        args,
        {**asdict(info), "cluster": args.cluster},
        f"{tenant}/{name}@{info.number} will be part of {where} future pools",
    )
    return 0


def _pool(ctx: _Context, args: argparse.Namespace) -> int:
    try:
        mapping = dict(item.split("=", 1) for item in args.map)
    except ValueError:
        raise DatasetError("--map takes FROM=TO, e.g. --map scratches=scratch") from None
    built = build_pool(ctx.engine, mapping, args.cluster)
    _emit(
        args,
        {**asdict(built), "ref": built.ref},
        f"{built.ref}: {built.images} images from "
        f"{len(built.contributions)} contributions; classes {', '.join(built.classes)}",
    )
    return 0


def _clusters(ctx: _Context, args: argparse.Namespace) -> int:
    action = args.cluster_action
    if action == "create":
        create_cluster(ctx.engine, args.name, args.by)
        _emit(args, {"created": args.name}, f"cluster {args.name} created; add members with 'clusters add-member'")
    elif action == "add-member":
        add_member(ctx.engine, args.name, args.tenant, args.by)
        _emit(args, {"cluster": args.name, "added": args.tenant}, f"{args.tenant} is a member of {args.name}")
    elif action == "remove-member":
        remove_member(ctx.engine, args.name, args.tenant, args.by)
        _emit(
            args,
            {"cluster": args.name, "removed": args.tenant},
            f"{args.tenant} is no member of {args.name} now: later pools leave its contributions out",
        )
    elif action == "members":
        rows = memberships(ctx.engine, args.name)
        _emit(
            args,
            [asdict(m) for m in rows],
            "\n".join(
                f"{m.tenant}\tadded {m.added_at:%Y-%m-%d %H:%M} by {m.added_by}"
                + (f"\tremoved {m.removed_at:%Y-%m-%d %H:%M} by {m.removed_by}" if m.removed_at else "")
                for m in rows
            ),
        )
    else:
        names = tenant_clusters(ctx.engine, args.tenant) if args.tenant else cluster_names(ctx.engine)
        _emit(args, names, "\n".join(names))
    return 0


_ACTIONS: dict[str, Callable[[_Context, argparse.Namespace], int]] = {
    "import": _import,
    "validate": _validate,
    "stats": _stats,
    "split": _split,
    "snapshot": _snapshot,
    "versions": _versions,
    "diff": _diff,
    "export": _export,
    "contribute": _contribute,
    "pool": _pool,
    "clusters": _clusters,
}
