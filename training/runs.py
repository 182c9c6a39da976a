"""A training run's folder and its record, ``run.json``: what a model's lineage is copied from.

<home>/runs/<name>/run.json        dataset version, base and its hash, hyperparameters, code versions,
                                   status, timings; later the evaluation, export and parity results
<home>/runs/<name>/train.log       Ultralytics' log lines
<home>/runs/<name>/data/           the dataset version as the YOLO folder it trained on
<home>/runs/<name>/weights/        Ultralytics' best.pt and last.pt (resume reads last.pt)
<home>/runs/<name>/results.csv     per-epoch losses and validation metrics (Ultralytics)
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lineqa import __version__
from lineqa.training.errors import TrainingError

RECORD_NAME = "run.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_versions() -> dict[str, Any]:
    """Versions of what trained the model: lineqa (and its git commit when run from a checkout) and the stack."""
    versions: dict[str, Any] = {"lineqa": __version__}
    for package in ("ultralytics", "torch", "onnxruntime"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        versions["git_commit"] = commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        versions["git_commit"] = None  # an installed package, not a checkout
    return versions


@dataclass(frozen=True)
class Run:
    """One run folder. The record is rewritten whole (atomically) at each step, never appended to."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_NAME

    @property
    def best_weights(self) -> Path:
        return self.root / "weights" / "best.pt"

    def exists(self) -> bool:
        return self.record_path.is_file()

    def record(self) -> dict[str, Any]:
        if not self.exists():
            raise TrainingError(f"{self.root} is not a lineqa training run (no {RECORD_NAME})")
        data: dict[str, Any] = json.loads(self.record_path.read_text())
        return data

    def write(self, record: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.record_path.with_suffix(".tmp")
        staging.write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(staging, self.record_path)

    def update(self, **fields: Any) -> dict[str, Any]:
        record = self.record()
        record.update(fields)
        self.write(record)
        return record


def find_run(ref: str, runs_root: Path) -> Run:
    """A run by folder path or by name under the runs root."""
    path = Path(ref).expanduser()
    run = Run(path if path.is_dir() else runs_root / ref)
    if not run.exists():
        raise TrainingError(f"no training run {ref!r} (looked for {run.record_path})")
    return run
