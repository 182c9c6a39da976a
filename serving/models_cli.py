"""``lineqa models``: the model repository that Triton serves, and the registry on top of it.

lineqa models publish RUN --name NAME   a trained, exported, parity-checked run as NAME's next version
lineqa models promote NAME VERSION      put a version on the line (refused if worse than the current one)
lineqa models rollback NAME             back to the version promoted before
lineqa models list                      models and versions; * marks the one on the line
lineqa models show NAME[@VERSION]       lineage (dataset, base, hyperparameters, metrics, parity) and audit
lineqa models add NAME MODEL.onnx       add any exported ONNX model as NAME's next version (no lineage)
lineqa models repo --check              validate the repository (exit 1 on any problem)
lineqa models allow NAME TENANT         let a tenant's recipes use platform model NAME (audited; disallow undoes;
                                        refused for a non-member if NAME was trained on a cluster's pool)
lineqa models grants NAME               who may use platform model NAME, and every change to that

A model belongs to a tenant by its name, ``<tenant>.<model>`` (``acme.pcb-defects``); a name without a tenant
prefix is a platform model (:mod:`lineqa.serving.model_access`). Promotions and rollbacks need ``--reason``:
with who and when, and the version on the line before, they are the model's audit trail.

A running gateway follows promotions and rollbacks by itself: the embedded Triton loads the new version beside
the old one and unloads the old one once no frame uses it; NVIDIA's Triton serves what its version policy names.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from lineqa.home import default_home, env_default
from lineqa.serving.access import AccessError
from lineqa.serving.database import database_url, open_database
from lineqa.serving.model_access import ModelGrants
from lineqa.serving.model_repository import (
    DYNAMIC_EXPORT_HINT,
    ModelRepository,
    ModelSettings,
    VersionPolicy,
    default_settings,
    read_onnx_metadata,
)
from lineqa.serving.promotions import current_user
from lineqa.vision.detector import IMAGE_INPUT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, help="model repository (default: <lineqa home>/models)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="add an exported ONNX model as the next version of NAME")
    add.add_argument("name")
    add.add_argument("model", type=Path)
    add.add_argument(
        "--max-batch-size",
        type=int,
        help="largest batch Triton forms (0: no batching). Default: 16 for an export with a dynamic batch, 0 for "
        "one with a fixed batch (Ultralytics' plain 'yolo export format=onnx'), the model's own for a new version",
    )
    add.add_argument(
        "--max-queue-delay-us", type=int, help=f"dynamic batching delay (default {ModelSettings.max_queue_delay_us})"
    )
    add.add_argument(
        "--version-policy", choices=[p.value for p in VersionPolicy], help="versions NVIDIA's Triton loads (all)"
    )
    add.add_argument("--instances", type=int, help="model instances per device (default 1)")
    add.add_argument("--gpu", action="store_true", default=None, help="run instances on GPUs (NVIDIA Triton)")
    sub.add_parser("list", help="models and versions").add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="a version's lineage and the model's promotion history")
    show.add_argument("model", help="NAME or NAME@VERSION (default: the version on the line)")
    publish = sub.add_parser("publish", help="publish a training run that passed the parity gate")
    publish.add_argument("run", help="run name or folder")
    publish.add_argument("--name", required=True, help="model name in the repository (what recipes name)")
    promote = sub.add_parser("promote", help="put a version on the line, gated on the held-out split")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--metric", choices=["mAP50-95", "mAP50"], default="mAP50-95")
    promote.add_argument("--margin", type=float, default=0.01, help="how much worse may pass (default 0.01)")
    promote.add_argument("--force", action="store_true", help="override the gate (needs --reason; audited)")
    rollback = sub.add_parser("rollback", help="return to the version promoted before")
    rollback.add_argument("name")
    grant = sub.add_parser("allow", help="let a tenant's recipes use a platform model")
    revoke = sub.add_parser("disallow", help="stop a tenant's recipes using a platform model")
    for step in (grant, revoke):
        step.add_argument("name")
        step.add_argument("tenant")
    grants = sub.add_parser("grants", help="which tenants may use a platform model, and every change")
    grants.add_argument("name")
    for step in (publish, promote, rollback, grant, revoke):
        step.add_argument("--by", default="", help="who does it (default: the user name)")
        if step is not publish:
            step.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    for step in (publish, promote, grant, revoke, grants):
        step.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
        step.add_argument("--db", default=env_default("LINEQA_DB"), help="database URL (default: <home>/lineqa.db)")
    repo = sub.add_parser("repo", help="repository-wide actions")
    repo.add_argument("--check", action="store_true", required=True, help="validate the repository")


def _registry(args: argparse.Namespace, repository: ModelRepository) -> int:
    """publish, promote and rollback: training's registry (imported only here: it evaluates models)."""
    from lineqa.training import registry
    from lineqa.training.bases import WeightsStore
    from lineqa.training.runs import find_run

    home = getattr(args, "home", None) or default_home()
    if args.action == "publish":
        run = find_run(args.run, home / "runs")
        _refuse_outside_cluster(args, repository, lineage=run.record())  # before minutes of export and parity
        if not run.record().get("export"):
            from lineqa.training.export import export_run  # needs torch: only when the run was never exported

            export_run(run)
        version = registry.publish(run, args.name, repository, WeightsStore(home / "weights"), by=args.by)
        on_line = repository.serving_version(args.name).version
        print(f"published {run.name} as {args.name} v{version.version} ({version.path}); v{on_line} is on the line")
        return 0
    if args.action == "promote":
        comparison = registry.promote(
            repository, args.name, args.version, home, metric=args.metric, margin=args.margin,
            force=args.force, reason=args.reason, by=args.by, db=args.db,
        )  # fmt: skip
        if comparison:
            print(
                f"{args.metric} on {comparison.dataset} {comparison.split}: v{args.version} {comparison.candidate:.4f}"
                f" vs {comparison.current:.4f} on the line before (margin {comparison.margin})"
            )
        print(f"{args.name} v{args.version} is on the line")
        return 0
    restored = registry.rollback(repository, args.name, reason=args.reason, by=args.by)
    print(f"{args.name} rolled back: v{restored} is on the line")
    return 0


def _show(repository: ModelRepository, ref: str) -> int:
    name, _, number = ref.partition("@")
    version = repository.version(name, int(number) if number.isdigit() else None)
    history = [event.__dict__ for event in repository.promotions(name).events()]
    data = {
        "name": name,
        "version": version.version,
        "on_line": repository.serving_version(name).version == version.version,
        "path": str(version.path),
        "classes": list(version.metadata.class_names),
        "input_hw": list(version.metadata.input_hw),
        "input_encoding": version.metadata.input_encoding,
        "sha256": version.metadata.sha256,
        "lineage": version.metadata.lineage,
        "audit": history,
    }
    print(json.dumps(data, indent=2, default=str))
    return 0


def _add(repository: ModelRepository, args: argparse.Namespace) -> int:
    """``models add``: the model's settings (a new model's follow its file's batch), changed where asked."""
    if repository.versions(args.name):
        base = repository.settings(args.name)
    else:
        base = default_settings(read_onnx_metadata(args.model))
    asked = {
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_us": args.max_queue_delay_us,
        "version_policy": VersionPolicy(args.version_policy) if args.version_policy else None,
        "instance_count": args.instances,
        "gpu": args.gpu,
    }
    settings = replace(base, **{key: value for key, value in asked.items() if value is not None})
    version = repository.add_version(args.name, args.model, settings=settings)
    print(f"added {version.name} version {version.version} at {version.path}")
    if version.metadata.input_encoding != IMAGE_INPUT:  # the one thing a plant must know before sending frames
        print(f"input {version.metadata.input_encoding}: every frame must come with its reference")
    if version.metadata.fixed_batch is not None:
        print(
            f"the model was exported with a fixed batch of {version.metadata.fixed_batch}: served without batching "
            f"(one frame per call); for throughput, {DYNAMIC_EXPORT_HINT}"
        )
    return 0


def _refuse_outside_cluster(
    args: argparse.Namespace,
    repository: ModelRepository,
    *,
    tenant: str | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> None:
    """Refuse a grant of ``args.name`` to ``tenant``, or a new version trained as ``lineage`` says, that would
    take a cluster's model outside the cluster (:mod:`lineqa.training.cluster_models`; imported only here,
    as cluster memberships live in the hub's dataset catalog)."""
    from lineqa.datasets.database import open_catalog_database
    from lineqa.training import cluster_models

    clusters = cluster_models.clusters_behind(repository, args.name) if tenant is not None else {}
    if not clusters and cluster_models.trained_on_cluster(lineage or {}) is None:
        return  # no cluster's pool behind the model or the run: nothing the cluster rule could refuse
    url = database_url(args.home or default_home(), args.db)
    engine = open_catalog_database(url)
    try:
        if tenant is not None:
            reason = cluster_models.outside_clusters(engine, clusters, args.name, tenant)
        else:
            gateway = open_database(url)
            try:
                granted = ModelGrants(gateway).allowed_tenants(args.name)
            finally:
                gateway.dispose()
            reason = cluster_models.publish_refusal(engine, args.name, lineage or {}, granted)
    finally:
        engine.dispose()
    if reason:
        raise AccessError(reason)


def _grants(args: argparse.Namespace, repository: ModelRepository) -> int:
    """allow, disallow and grants: the gateway database's grant events."""
    engine = open_database(database_url(args.home or default_home(), args.db))
    try:
        grants = ModelGrants(engine)
        if args.action == "grants":
            for e in grants.history(args.name):
                print(
                    f"{e.at.isoformat()}  {'allow' if e.allowed else 'disallow':<8} {e.tenant}  by {e.by}: {e.reason}"
                )
            return 0
        allowed = args.action == "allow"
        if allowed:
            _refuse_outside_cluster(args, repository, tenant=args.tenant)
        grants.change(args.tenant, args.name, allowed=allowed, by=args.by or current_user(), reason=args.reason)
        print(f"tenant {args.tenant} {'may' if allowed else 'may no longer'} use {args.name}")
    finally:
        engine.dispose()
    return 0


def run(args: argparse.Namespace) -> int:
    repository = ModelRepository(args.repo or default_home() / "models")
    if args.action in ("publish", "promote", "rollback"):
        return _registry(args, repository)
    if args.action in ("allow", "disallow", "grants"):
        return _grants(args, repository)
    if args.action == "show":
        return _show(repository, args.model)
    if args.action == "add":
        return _add(repository, args)
    if args.action == "list":
        for name in repository.model_names():
            on_line = repository.serving_version(name).version
            for v in repository.versions(name):
                row = {
                    "name": v.name,
                    "version": v.version,
                    "backend": v.backend,
                    "head": v.metadata.head.value,
                    "input_hw": list(v.metadata.input_hw),
                    "classes": list(v.metadata.class_names),
                    "on_line": v.version == on_line,
                }
                size = "x".join(map(str, v.metadata.input_hw))
                classes = ", ".join(v.metadata.class_names)
                mark = "*" if v.version == on_line else " "
                line = f"{mark} {v.name:<24} v{v.version:<4} {v.backend:<12} {row['head']:<8} {size:<9} {classes}"
                print(json.dumps(row) if args.json else line)
        return 0
    problems = repository.check()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if not problems:
        print(f"{repository.root}: ok ({len(repository.model_names())} models)")
    return 1 if problems else 0
