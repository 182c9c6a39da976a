"""Training runs as the review app shows them, read-only: ``<home>/runs/<name>/`` (:mod:`lineqa.training.runs`).

A run belongs to the tenant whose dataset version it trained on (``run.json``'s ``dataset.ref``, e.g.
``acme/pcb@3``). A run of the platform's pool (``pool@N``) or of a cluster's (``cluster/<name>@N``) belongs to no
single tenant: no tenant's pages list it and no tenant can grant it. The app shows a tenant its runs: the record
(without this machine's Ultralytics settings), each evaluation's ``metrics.json`` and pictures, and the export's
parity check. Another tenant's run, a pool's, and a name that is no run all answer the same 404.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineqa.datasets.catalog import parse_ref
from lineqa.datasets.errors import DatasetError
from lineqa.datasets.versions import is_pool_ref
from lineqa.review.errors import BadInputError, NotFoundError
from lineqa.training.runs import RECORD_NAME

logger = logging.getLogger(__name__)

PICTURES = ("pr_curves.png", "confusion_matrix.png", "operating_curve.png")  # what 'lineqa evaluate' draws
HIDDEN_FIELDS = ("ultralytics_settings",)  # this machine's paths and settings: nothing a reviewer needs
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:+-")


def dataset_tenant(ref: str) -> str | None:
    """The tenant a dataset reference belongs to; None for a pool or cluster version (or an unreadable ref)."""
    if is_pool_ref(ref):
        return None
    try:
        return parse_ref(ref)[0]
    except DatasetError:
        return None


def _safe(name: str) -> bool:
    """A single folder name (no separators, not hidden, not ``..``)."""
    return bool(name) and len(name) <= 128 and name[0].isalnum() and set(name) <= _SAFE_NAME


@dataclass(frozen=True)
class RunSummary:
    name: str
    dataset: str
    tenant: str | None
    status: str
    created_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"run": self.name, "dataset": self.dataset, "status": self.status, "created_at": self.created_at}


class TrainingRuns:
    """The runs under one folder (``<home>/runs``; None: this app shows no runs)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _record(self, name: str) -> dict[str, Any] | None:
        if self.root is None or not _safe(name):
            return None
        path = self.root / name / RECORD_NAME
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("training run %s: cannot read %s (%s)", name, path, exc)
            return None
        return record if isinstance(record, dict) else None

    def _summary(self, name: str, record: dict[str, Any]) -> RunSummary:
        dataset = str((record.get("dataset") or {}).get("ref") or "")
        return RunSummary(name, dataset, dataset_tenant(dataset), str(record.get("status", "")),
                          record.get("created_at"))  # fmt: skip

    def tenant_of(self, name: str) -> str | None:
        """The tenant run ``name`` belongs to (None for a pool's); :class:`BadInputError` if there is no such run."""
        record = self._record(name)
        if record is None:
            raise BadInputError(f"no training run {name!r}", "scope")
        return self._summary(name, record).tenant

    def runs(self, tenant: str, within: frozenset[str] | None = None) -> list[RunSummary]:
        """``tenant``'s runs (only those named in ``within`` when given), newest first."""
        if self.root is None or not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if within is not None and folder.name not in within:
                continue
            record = self._record(folder.name)
            if record is not None and (summary := self._summary(folder.name, record)).tenant == tenant:
                found.append(summary)
        return sorted(found, key=lambda r: (r.created_at or "", r.name), reverse=True)

    def _own(self, tenant: str, name: str) -> tuple[Path, dict[str, Any]]:
        """The folder and record of ``tenant``'s run ``name``; 404 for a missing run and anyone else's alike."""
        record = self._record(name)
        if self.root is None or record is None or self._summary(name, record).tenant != tenant:
            raise NotFoundError(f"tenant {tenant!r} has no training run {name!r}")
        return self.root / name, record

    def run(self, tenant: str, name: str) -> dict[str, Any]:
        """One run of ``tenant``: its record, evaluations (metrics and pictures per split) and export parity."""
        folder, record = self._own(tenant, name)
        evaluations = []
        for split in sorted(p for p in (folder / "eval").glob("*") if p.is_dir() and _safe(p.name)):
            metrics = _json_file(split / "metrics.json")
            pictures = [p for p in PICTURES if (split / p).is_file()]
            if metrics is not None or pictures:
                evaluations.append({"split": split.name, "metrics": metrics, "pictures": pictures})
        return {
            "run": name,
            "tenant": tenant,
            "record": {k: v for k, v in record.items() if k not in HIDDEN_FIELDS},
            "evaluations": evaluations,
            "parity": _json_file(folder / "export" / "parity.json"),
        }

    def picture(self, tenant: str, name: str, split: str, picture: str) -> Path:
        """The path of one evaluation picture of ``tenant``'s run ``name``."""
        folder, _ = self._own(tenant, name)
        path = folder / "eval" / split / picture
        if picture not in PICTURES or not _safe(split) or not path.is_file():
            raise NotFoundError(f"run {name!r} has no picture {split}/{picture}")
        return path


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s)", path, exc)
        return None
