"""``lineqa train``: fine-tune or train a YOLO detector on a dataset version, offline, in a recorded run.

    lineqa train --dataset acme/pcb@3 --base yolo11n.yaml                 # from scratch (no pretrained weights)
    lineqa train --dataset pool@2 --base yolo11s.yaml --name platform-base  # the platform base model
    lineqa train --dataset acme/pcb@3 --base platform-base@1               # fine-tune from a registry model
    lineqa train --dataset cluster/automotive@1 --base yolo11s.yaml --name automotive-base  # a cluster's base
    lineqa train --dataset acme/pcb@3 --base automotive-base@1             # a member fine-tunes from it
    lineqa train --dataset acme/pcb@3 --base ./yolo11n.pt                  # Ultralytics' own weights, if you have them
    lineqa train --dataset acme/pcb@3 --base yolo11n.yaml --input reference  # learn from (part, golden sample)
    lineqa train --resume pcb-20261125-101500                              # continue an interrupted run
    lineqa train --dataset acme/pcb@3 --base yolo11n.yaml --device 0,1     # Ultralytics' multi-GPU (DDP) mode

Defaults for small defects (override any with ``--set KEY=VALUE``, as with ``yolo train``): image size 640,
because a defect of a few pixels must not shrink further; scale augmentation 0.25 instead of 0.5, because a
half-size copy of a 10 px defect is below what the stride-8 head finds; vertical flips on, because a board or
a steel strip has no "up" for its defects; mosaic on until the last 10 epochs. AdamW with one optimizer step
per batch: small tenant datasets give few batches per epoch, and Ultralytics' default of a step per 64
images would learn too slowly from them.

``--input reference`` trains on each sample paired with its reference (its golden sample): the run's images
are the vision core's model input built from the pair (frame, aligned reference, difference), the very input
``predict``, ``evaluate`` and the gateway build at inspection time; every sample must have a reference. The run
records the encoding, and its ONNX export carries it in the model's metadata, so whatever serves the model
knows to ask for a reference with each frame. Each pair is photographed again before it is aligned (a seeded
shot; ``--no-reshoot`` turns it off), since no pair on a line matches pixel for pixel; hue and saturation
augmentation are off, since they would mix the input's three grey planes.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from lineqa.content_store import TENANT_ID, ContentStore
from lineqa.datasets.catalog import parse_ref
from lineqa.datasets.clusters import is_member
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.formats import Compose
from lineqa.datasets.pool import parse_pool_ref
from lineqa.datasets.versions import load_version
from lineqa.db import database_url
from lineqa.home import default_home
from lineqa.serving.model_repository import ModelRepository
from lineqa.training.bases import Base, WeightsStore, file_sha256, resolve_base
from lineqa.training.data import TrainingSet, write_training_set
from lineqa.training.errors import TrainingError
from lineqa.training.reshoot import reshot_input
from lineqa.training.runs import Run, code_versions, find_run, now_iso
from lineqa.training.ultralytics_adapter import (
    TrainSpec,
    checkpoint_names,
    cpu_threads,
    pinned_settings,
    remap_classes,
    resolve_device,
    resume,
    train,
)
from lineqa.vision.detector import IMAGE_INPUT
from lineqa.vision.reference import ENCODING, model_input

INPUTS: dict[str, tuple[str, Compose | None]] = {"image": (IMAGE_INPUT, None), "reference": (ENCODING, model_input)}
"""``--input``: the encoding a run records, and how its training images are built from each sample."""

REFERENCE_DEFAULTS: dict[str, Any] = {"hsv_h": 0.0, "hsv_s": 0.0}
"""Reference mode's input is three grey images (frame, reference, difference) side by side as colour planes:
a hue turn or a saturation change would mix them, e.g. light up the difference where nothing differs. A change
of value scales all three alike, so it stays on."""

SMALL_DEFECT_DEFAULTS: dict[str, Any] = {
    "scale": 0.25,
    "flipud": 0.5,
    "fliplr": 0.5,
    "mosaic": 1.0,
    "close_mosaic": 10,
    "optimizer": "AdamW",
}
LR_FROM_SCRATCH, LR_FINE_TUNE = 0.003, 0.001
OWN_FLAGS = {"epochs", "imgsz", "batch", "device", "seed", "workers"}
OWN_OPTIONS = {"data", "project", "name", "exist_ok", "model", "resume"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--db", help="dataset catalog database URL (default: SQLite <home>/lineqa.db)")
    parser.add_argument("--dataset", help="<tenant>/<name>@<version>, pool@<version> or cluster/<name>@<version>")
    parser.add_argument(
        "--tenant",
        help="train for this tenant: only its datasets, the pools it is in, and its clusters' pools and base "
        "models are found (default: the dataset's tenant; none for pool@N and cluster/<name>@N: the platform)",
    )
    parser.add_argument("--base", default="yolo11n.yaml", help="model YAML, local .pt or registry NAME[@VERSION]")
    parser.add_argument("--name", help="run name (default: <dataset>-<UTC time>)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=640, help="training image size (default 640)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="auto", help="auto, cpu, 0, 0,1,... (several GPUs: DDP)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=4, help="data loader workers")
    parser.add_argument(
        "--threads",
        type=int,
        help="training threads on a CPU (default: every core; Ultralytics alone would leave one idle)",
    )
    parser.add_argument(
        "--background-share", type=float, default=0.1, help="most background images in train (default 0.1)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any Ultralytics argument")
    parser.add_argument(
        "--input",
        choices=sorted(INPUTS),
        help="what the model looks at: 'image' (default), or 'reference': each sample with its reference",
    )
    parser.add_argument(
        "--reshoot",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--input reference: photograph each training pair again before it is aligned, as a line's pairs "
        "never match pixel for pixel (default: on; see lineqa.training.reshoot)",
    )
    parser.add_argument("--resume", metavar="RUN", help="continue an interrupted run (name or folder)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs with YAML values (numbers, booleans), as Ultralytics' own CLI takes them."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TrainingError(f"--set {item!r} is not KEY=VALUE")
        if key in OWN_FLAGS:
            raise TrainingError(f"--set {key}=...: {key} has its own option, --{key}")
        if key in OWN_OPTIONS:
            raise TrainingError(f"--set {key}=...: lineqa sets {key} itself (the run's folder, data and model)")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _hyperparameters(args: argparse.Namespace, base: Base) -> dict[str, Any]:
    options = dict(SMALL_DEFECT_DEFAULTS)
    if args.input == "reference":
        options.update(REFERENCE_DEFAULTS)
    options["lr0"] = LR_FROM_SCRATCH if base.kind == "yaml" else LR_FINE_TUNE
    options["nbs"] = args.batch
    options.update(parse_overrides(args.set))
    return options


def training_input(args: argparse.Namespace) -> tuple[str, Compose | None]:
    """The encoding a new run records and how its training images are built (``--input``, ``--reshoot``)."""
    encoding, compose = INPUTS[args.input or "image"]
    if compose is not None and args.reshoot:
        return encoding, reshot_input
    return encoding, compose


def _starting_weights(base: Base, classes: list[str], run: Run) -> tuple[str, dict[str, Any]]:
    """The model Ultralytics starts from; a base trained on other classes gets its class head remapped."""
    if base.kind == "yaml" or checkpoint_names(Path(base.source)) == classes:
        return base.source, {}
    remapped = run.root / "base-remapped.pt"
    report = remap_classes(Path(base.source), classes, remapped)
    print(f"base {base.ref}: class head remapped to {classes} (kept trained rows for {report['kept'] or 'none'})")
    return str(remapped), report


def _acting_tenant(args: argparse.Namespace) -> str | None:
    """Whom the run is for: ``--tenant``, else the owner of a tenant's dataset; None for the platform's jobs."""
    if args.tenant or parse_pool_ref(args.dataset) is not None:
        return str(args.tenant) if args.tenant else None
    return parse_ref(args.dataset)[0]


def cluster_base_rule(engine: Engine, dataset: str, tenant: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Who may start from a registry model: one trained on a cluster's pool (``cluster/<name>@N`` in its
    lineage) only runs of that cluster's pool and runs of its current members; any other model, anyone."""
    target = parse_pool_ref(dataset)

    def visible(lineage: Mapping[str, Any]) -> bool:
        trained_on = str((lineage.get("dataset") or {}).get("ref") or "")
        source = parse_pool_ref(trained_on) if trained_on else None
        if source is None or source[0] is None:
            return True
        cluster = source[0]
        if target is not None and target[0] == cluster:
            return True
        return tenant is not None and is_member(engine, cluster, tenant)

    return visible


def _prepare(
    args: argparse.Namespace, engine: Engine, home: Path, run_: Run, base: Base, hyperparameters: dict[str, Any]
) -> tuple[TrainSpec, TrainingSet]:
    """Write the dataset into the run, remap the base if needed, record the run; return what to train."""
    manifest, images = load_version(engine, ContentStore(home / "images"), args.dataset, _acting_tenant(args))
    encoding, compose = training_input(args)
    training_set = write_training_set(
        args.dataset, manifest, images, run_.root / "data", background_share=args.background_share, compose=compose
    )
    source, remap = _starting_weights(base, list(training_set.classes), run_)
    spec = TrainSpec(
        model=source,
        data_yaml=training_set.data_yaml,
        run_dir=run_.root,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device=resolve_device(args.device),
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        extra=hyperparameters,
    )
    run_.write(
        {
            "run": run_.name,
            "status": "training",
            "created_at": now_iso(),
            "dataset": training_set.lineage(),
            "input_encoding": encoding,
            "input_reshot": compose is reshot_input,
            "base": {**base.lineage(), "class_remap": remap},
            "hyperparameters": {
                "epochs": spec.epochs,
                "imgsz": spec.imgsz,
                "batch": spec.batch,
                "device": spec.device,
                "seed": spec.seed,
                "workers": spec.workers,
                **({"threads": cpu_threads(spec.threads)} if spec.device == "cpu" else {}),
                **hyperparameters,
            },
            "code": code_versions(),
            "ultralytics_settings": pinned_settings(run_.root),
        }
    )
    return spec, training_set


def _new_run(args: argparse.Namespace, home: Path) -> Run:
    if not args.dataset:
        raise TrainingError("give --dataset <tenant>/<name>@<version> (or --resume RUN)")
    if args.tenant and not TENANT_ID.match(args.tenant):
        raise TrainingError(f"--tenant {args.tenant!r} is not a tenant id")
    name = args.name or f"{args.dataset.split('@')[0].replace('/', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
    run = Run(home / "runs" / name)
    if run.root.exists():
        raise TrainingError(f"run {run.root} exists already: choose another --name, or --resume it")
    return run


def _check_resumed_input(run_: Run, asked: str | None) -> None:
    """A resumed run keeps the encoding its data was written in; asking for another cannot be honoured."""
    recorded = run_.record().get("input_encoding", IMAGE_INPUT)
    if asked is not None and INPUTS[asked][0] != recorded:
        raise TrainingError(f"run {run_.name} trains on {recorded!r} input; --resume keeps it (drop --input {asked})")


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    if args.threads is not None and args.threads < 1:
        raise TrainingError(f"--threads {args.threads}: give at least 1")
    if args.resume:
        existing = find_run(args.resume, home / "runs")
        _check_resumed_input(existing, args.input)
        cpu = existing.record().get("hyperparameters", {}).get("device") == "cpu"
        threads = {"resumed_threads": cpu_threads(args.threads)} if cpu else {}
        existing.update(status="training", resumed_at=now_iso(), **threads)
        started = time.monotonic()
        best = resume(existing.root, args.threads)
        _finish(existing, best, time.monotonic() - started)
        return 0
    run_ = _new_run(args, home)
    engine = open_catalog_database(database_url(home, args.db))
    try:
        rule = cluster_base_rule(engine, args.dataset, _acting_tenant(args))
        base = resolve_base(args.base, ModelRepository(home / "models"), WeightsStore(home / "weights"), rule)
        hyperparameters = _hyperparameters(args, base)  # a bad --set is refused before anything is written
        run_.root.mkdir(parents=True)
        try:
            spec, training_set = _prepare(args, engine, home, run_, base, hyperparameters)
        except BaseException:
            shutil.rmtree(run_.root, ignore_errors=True)  # nothing trained: leave no half-made run behind
            raise
    finally:
        engine.dispose()
    encoding = INPUTS[args.input or "image"][0]
    print(
        f"run {run_.root}: {training_set.images_per_split} images of {args.dataset}, base {base.ref}, input {encoding}"
    )
    started = time.monotonic()
    try:
        best = train(spec)
    except KeyboardInterrupt:
        run_.update(status="interrupted")
        raise
    except Exception as exc:
        run_.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(run_, best, time.monotonic() - started)
    return 0


def _finish(run_: Run, best: Path, seconds: float) -> None:
    record = run_.record()
    total = float(record.get("train_seconds", 0.0)) + seconds
    weights = {"best": str(best), "sha256": file_sha256(best)}
    run_.update(status="trained", finished_at=now_iso(), train_seconds=round(total, 1), weights=weights)
    print(f"trained in {total / 60:.1f} min; weights {best}\nnext: lineqa evaluate --run {run_.root}")
