"""The model registry on top of Triton's model repository: publish a checked run, promote it, roll back.

A published version carries its lineage in ``lineqa.json`` (run, dataset version, base, hyperparameters, code
versions, metrics, parity report, weights hash); its trained weights go to the content-addressed weights
store so that later runs can fine-tune from ``NAME@VERSION``. Promotion is gated: the candidate and the
version on the line are evaluated on the candidate's held-out split, and a candidate worse by more than the
margin is refused unless the override is given with a reason, which the audit trail keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineqa.content_store import ContentStore
from lineqa.datasets.database import open_catalog_database
from lineqa.datasets.versions import load_version
from lineqa.db import database_url
from lineqa.serving.model_repository import ModelRepository, ModelVersion, read_onnx_metadata
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.predict import default_recipe
from lineqa.serving.promotions import event
from lineqa.training.bases import WeightsStore, file_sha256
from lineqa.training.errors import TrainingError
from lineqa.training.evaluation import evaluate
from lineqa.training.runs import Run, now_iso

METRICS = ("mAP50-95", "mAP50")


@dataclass(frozen=True)
class Comparison:
    metric: str
    dataset: str
    split: str
    candidate: float
    current: float
    margin: float

    @property
    def worse_than_allowed(self) -> bool:
        return self.candidate < self.current - self.margin

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "worse_than_allowed": self.worse_than_allowed}


def _checked_export(run: Run) -> dict[str, Any]:
    record = run.record()
    export: dict[str, Any] | None = record.get("export")
    if not export:
        raise TrainingError(f"{run.name} is not exported: run 'lineqa export {run.name}' first")
    if not export["parity"]["passed"]:
        raise TrainingError(
            f"{run.name} failed the parity gate ({export['parity']['differences']} differences, see "
            f"{run.root / 'export' / 'parity.json'}): it cannot be published"
        )
    onnx = Path(export["onnx"])
    if not onnx.is_file() or file_sha256(onnx) != export["onnx_sha256"]:
        raise TrainingError(f"{onnx} changed after the parity gate passed: export {run.name} again")
    if file_sha256(run.best_weights) != export["weights_sha256"]:
        raise TrainingError(f"{run.best_weights} changed after export: export {run.name} again")
    return export


def publish(run: Run, name: str, repository: ModelRepository, weights: WeightsStore, *, by: str = "") -> ModelVersion:
    """Add a run's exported model as the next version of ``name``; the line keeps its current version."""
    export = _checked_export(run)
    record = run.record()
    onnx = Path(export["onnx"])
    existing = repository.versions(name) if name in repository.model_names() else []
    if existing:
        new, old = read_onnx_metadata(onnx), existing[-1].metadata
        if (new.class_names, new.input_hw, new.output_dims) != (old.class_names, old.input_hw, old.output_dims):
            raise TrainingError(
                f"model {name} serves classes {list(old.class_names)} at {old.input_hw}; run {run.name} has "
                f"{list(new.class_names)} at {new.input_hw}: publish it under another name"
            )
    lineage = {
        "run": run.name,
        "run_dir": str(run.root),
        "dataset": record["dataset"],
        "base": record["base"],
        "hyperparameters": record["hyperparameters"],
        "code": record["code"],
        "train_seconds": record.get("train_seconds"),
        "evaluation": _evaluation_summary(record.get("evaluation")),
        "parity": export["parity"],
        "weights_sha256": weights.put(run.best_weights),
        "published_at": now_iso(),
    }
    log = repository.promotions(name)
    if existing and log.promoted() is None:  # keep what was on the line before the registry managed it
        log.append(event("adopt", repository.serving_version(name).version, by=by, reason="on the line before"))
    version = repository.add_version(name, onnx, lineage)
    log.append(event("publish", version.version, by=by, details={"run": run.name}))
    if not existing:
        log.append(event("promote", version.version, by=by, reason="first version of the model"))
    return version


def _evaluation_summary(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    if not evaluation:
        return None
    keep = ("dataset", "split", "images", "mAP50", "mAP50-95", "per_class", "inspection", "coco_check")
    return {key: evaluation[key] for key in keep if key in evaluation}


def _held_out(candidate: ModelVersion) -> tuple[str, str]:
    lineage = candidate.metadata.lineage
    evaluation = lineage.get("evaluation") or {}
    if evaluation.get("dataset"):
        return str(evaluation["dataset"]), str(evaluation["split"])
    dataset = (lineage.get("dataset") or {}).get("ref")
    if not dataset:
        raise TrainingError(
            f"{candidate.name} v{candidate.version} has no dataset in its lineage to compare on: "
            "publish it from a training run, or promote with --force --reason"
        )
    splits = (lineage.get("dataset") or {}).get("images_per_split", {})
    return str(dataset), "test" if splits.get("test") else "val"


def compare(
    candidate: ModelVersion, current: ModelVersion, home: Path, *, metric: str, margin: float, db: str | None = None
) -> Comparison:
    """Both versions evaluated on the candidate's held-out split, through the serving code path."""
    if metric not in METRICS:
        raise TrainingError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    dataset, split = _held_out(candidate)
    engine = open_catalog_database(database_url(home, db))
    try:
        manifest, images = load_version(engine, ContentStore(home / "images"), dataset)
    finally:
        engine.dispose()
    chosen = [image for image in images if image.split == split]
    if not chosen:
        raise TrainingError(f"{dataset} has no {split!r} images to compare the two versions on")
    scores = []
    for version in (candidate, current):
        model = OnnxModel(version.model_file)
        result = evaluate(model, chosen, tuple(manifest.classes), default_recipe(version.name))
        scores.append(float(result.summary()[metric]))
    return Comparison(metric, dataset, split, scores[0], scores[1], margin)


def promote(
    repository: ModelRepository,
    name: str,
    version: int,
    home: Path,
    *,
    metric: str = "mAP50-95",
    margin: float = 0.01,
    force: bool = False,
    reason: str = "",
    by: str = "",
    db: str | None = None,
) -> Comparison | None:
    """Put ``version`` on the line, after the comparison gate (or the recorded override)."""
    candidate = repository.version(name, version)
    current = repository.serving_version(name)
    if candidate.version == current.version:
        raise TrainingError(f"{name} v{version} is already on the line")
    if force and not reason.strip():
        raise TrainingError("--force needs --reason: the override is recorded in the audit trail")
    comparison: Comparison | None = None
    try:
        comparison = compare(candidate, current, home, metric=metric, margin=margin, db=db)
    except TrainingError:
        if not force:
            raise
    if comparison and comparison.worse_than_allowed and not force:
        raise TrainingError(
            f"{name} v{version} is worse than v{current.version} on {comparison.dataset} {comparison.split}: "
            f"{metric} {comparison.candidate:.4f} vs {comparison.current:.4f} (margin {margin}); "
            "promote with --force --reason to override"
        )
    overridden = force and (comparison is None or comparison.worse_than_allowed)
    log = repository.promotions(name)
    if log.promoted() is None:
        log.append(event("adopt", current.version, by=by, reason="on the line before"))
    details = {"from": current.version, "comparison": comparison.to_json() if comparison else None}
    log.append(event("promote", version, by=by, reason=reason, override=overridden, details=details))
    return comparison


def rollback(repository: ModelRepository, name: str, *, reason: str = "", by: str = "") -> int:
    """Return the line to the version promoted before the current one; return that version."""
    log = repository.promotions(name)
    stack = log.stack()
    if len(stack) < 2:
        on_line = repository.serving_version(name).version
        raise TrainingError(f"{name}: nothing to roll back to (v{on_line} is the only version promoted)")
    log.append(event("rollback", stack[-2], by=by, reason=reason, details={"from": stack[-1]}))
    return stack[-2]
