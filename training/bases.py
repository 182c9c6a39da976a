"""What a run starts from: an Ultralytics model YAML (from scratch), a local ``.pt``, or a registry model.

A registry model is ``NAME`` or ``NAME@VERSION`` in the model repository; its lineage names the trained
weights, kept content-addressed beside the repository (``<home>/weights/<sha256>.pt``) because Triton serves
only the exported form. Nothing here downloads: a ``.pt`` that is not on disk is an error, never a fetch
from Ultralytics' release assets.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_repository import ModelRepository
from lineqa.training.errors import TrainingError

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Base:
    """A resolved starting point. ``source`` is what Ultralytics is given (a YAML name or a ``.pt`` path)."""

    ref: str
    kind: str  # "yaml", "pt" or "registry"
    source: str
    sha256: str

    def lineage(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "sha256": self.sha256}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WeightsStore:
    """Trained ``.pt`` files by content hash: what a registry model was exported from, for fine-tuning."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.pt"

    def put(self, weights: Path) -> str:
        digest = file_sha256(weights)
        target = self.path(digest)
        if not target.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = target.with_suffix(".tmp")
            shutil.copyfile(weights, staging)
            staging.replace(target)
        return digest


def resolve_base(
    ref: str,
    repository: ModelRepository,
    weights: WeightsStore,
    visible: Callable[[Mapping[str, Any]], bool] | None = None,
) -> Base:
    """Turn ``--base`` into something Ultralytics can load offline, with the hash the lineage records.

    ``visible`` is asked about a registry model's lineage: a model it refuses (a cluster's base model, for a
    tenant that is not a member) gets the answer a model that does not exist gets."""
    path = Path(ref).expanduser()
    if ref.endswith(YAML_SUFFIXES):
        text = path.read_bytes() if path.is_file() else ref.encode()  # a built-in name like yolo11n.yaml
        return Base(ref, "yaml", str(path) if path.is_file() else ref, hashlib.sha256(text).hexdigest())
    if ref.endswith(".pt"):
        if not path.is_file():
            raise TrainingError(f"base weights {ref} not found (nothing is downloaded: give a local .pt file)")
        return Base(ref, "pt", str(path.resolve()), file_sha256(path))
    name, _, version = ref.partition("@")
    if version and not version.isdigit():
        raise TrainingError(f"--base {ref!r}: a registry model is NAME or NAME@VERSION (a number)")
    try:
        found = repository.version(name, int(version) if version else None)
        if visible is not None and not visible(found.metadata.lineage):
            number = f" {version}" if version else ""
            raise ModelRepositoryError(f"model {name!r} has no version{number} in {repository.root}")
    except ModelRepositoryError as exc:
        raise TrainingError(f"--base {ref!r} is neither a model YAML, a .pt file nor a registry model: {exc}") from None
    digest = str(found.metadata.lineage.get("weights_sha256", ""))
    if not digest or not weights.path(digest).is_file():
        raise TrainingError(f"registry model {found.name} v{found.version} has no trained weights in {weights.root}")
    return Base(f"{found.name}@{found.version}", "registry", str(weights.path(digest)), digest)
