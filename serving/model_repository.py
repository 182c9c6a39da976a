"""The model repository: the only hand-over from training to serving, in Triton's own layout.

    <repo>/<model>/config.pbtxt                 generated from ModelSettings, never edited by hand
    <repo>/<model>/settings.json                those ModelSettings, so the config can be checked
    <repo>/<model>/<version>/model.onnx         (or model.plan for TensorRT)
    <repo>/<model>/<version>/lineqa.json        class names, input size, head, lineage
    <repo>/<model>/promotions.jsonl             which version is on the line, and who changed it when

The same folder is served by NVIDIA's Triton container (onnxruntime or TensorRT backend) and, through a derived
view (:mod:`lineqa.serving.triton_view`), by lineqa's embedded Triton. A version is written to a temporary folder
and renamed into place, so a server scanning the repository never sees half a model.

A model's configuration follows its files: an export with a dynamic batch dimension is batched (dynamic
batching up to ``max_batch_size``), one with a fixed batch (Ultralytics' plain ``yolo export format=onnx``)
is configured without batching (``max_batch_size: 0``, the batch in the dims), as Triton requires. Every
version of a model shares one configuration, so a version whose input size, batch, classes or head differ from
the model's other versions is refused: that is a new model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from lineqa.home import private_folder
from lineqa.serving.errors import ModelLoadError, ModelRepositoryError
from lineqa.serving.promotions import PromotionLog
from lineqa.vision.detector import IMAGE_INPUT, ModelSpec
from lineqa.vision.yolo_output import HeadKind

CONFIG_NAME = "config.pbtxt"
SETTINGS_NAME = "settings.json"
METADATA_NAME = "lineqa.json"
MODEL_FILES = {"model.onnx": "onnxruntime", "model.plan": "tensorrt"}
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class VersionPolicy(str, Enum):
    """Which versions Triton loads: every one (a recipe may pin an older one) or only the newest."""

    ALL = "all"
    LATEST = "latest"


DEFAULT_MAX_BATCH = 16
DYNAMIC_EXPORT_HINT = "export with a dynamic batch to batch frames: yolo export model=best.pt format=onnx dynamic=True"


@dataclass(frozen=True)
class ModelSettings:
    """How Triton serves one model: batching and instances. Everything else is read from the model.

    ``max_batch_size`` 0 is Triton's "no batching": the model's fixed batch is part of its input dims."""

    max_batch_size: int = DEFAULT_MAX_BATCH
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: tuple[int, ...] = ()
    version_policy: VersionPolicy = VersionPolicy.ALL
    instance_count: int = 1
    gpu: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 0 or self.instance_count < 1 or self.max_queue_delay_us < 0:
            raise ModelRepositoryError(f"invalid model settings {self}")
        if any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise ModelRepositoryError(f"preferred batch sizes {self.preferred_batch_sizes} must be 1..max_batch_size")

    def to_json(self) -> str:
        data = asdict(self)
        data["version_policy"] = self.version_policy.value
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelSettings:
        data = json.loads(text)
        data["version_policy"] = VersionPolicy(data["version_policy"])
        data["preferred_batch_sizes"] = tuple(data.get("preferred_batch_sizes", ()))
        return cls(**data)

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0


@dataclass(frozen=True)
class VersionMetadata:
    """What serving must know about one model version, and where it came from."""

    class_names: tuple[str, ...]
    input_hw: tuple[int, int]
    head: HeadKind
    output_dims: tuple[int, int]
    stride: int = 32
    input_name: str = "images"
    output_name: str = "output0"
    sha256: str = ""
    lineage: dict[str, Any] = field(default_factory=dict)
    fixed_batch: int | None = None  # the batch the model was exported with; None: a dynamic batch dimension
    input_encoding: str = IMAGE_INPUT  # what the model looks at (lineqa.vision.detector.ModelSpec)

    def spec(self, name: str, max_batch: int) -> ModelSpec:
        """The pre/post-processing spec; a served model always gets the full fixed-size letterbox."""
        batch = self.fixed_batch or max_batch
        return ModelSpec(
            name, self.input_hw, self.class_names, self.head, max_batch=batch, stride=self.stride,
            input_encoding=self.input_encoding,
        )  # fmt: skip

    def shape_differences(self, other: VersionMetadata) -> list[str]:
        """What would make ``other`` need another Triton configuration than this (empty: none)."""
        fields = {
            "input size": (self.input_hw, other.input_hw),
            "batch": (_batch_text(self.fixed_batch), _batch_text(other.fixed_batch)),
            "classes": (self.class_names, other.class_names),
            "head": (self.head.value, other.head.value),
            "output shape": (self.output_dims, other.output_dims),
            "input/output names": ((self.input_name, self.output_name), (other.input_name, other.output_name)),
            "input encoding": (self.input_encoding, other.input_encoding),
        }
        return [f"{what} {mine} vs {theirs}" for what, (mine, theirs) in fields.items() if mine != theirs]

    def to_json(self) -> str:
        data = asdict(self)
        data["head"] = self.head.value
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> VersionMetadata:
        data = json.loads(text)
        return cls(
            class_names=tuple(data["class_names"]),
            input_hw=(int(data["input_hw"][0]), int(data["input_hw"][1])),
            head=HeadKind(data["head"]),
            output_dims=(int(data["output_dims"][0]), int(data["output_dims"][1])),
            stride=int(data.get("stride", 32)),
            input_name=data.get("input_name", "images"),
            output_name=data.get("output_name", "output0"),
            sha256=data.get("sha256", ""),
            lineage=dict(data.get("lineage", {})),
            fixed_batch=data.get("fixed_batch"),
            input_encoding=data.get("input_encoding", IMAGE_INPUT),
        )


def _batch_text(fixed_batch: int | None) -> str:
    return "dynamic" if fixed_batch is None else f"fixed at {fixed_batch}"


def check_model_name(name: str) -> str:
    if not _NAME_PATTERN.match(name):
        raise ModelRepositoryError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 100, no path separators)"
        )
    return name


def render_config(name: str, backend: str, metadata: VersionMetadata, settings: ModelSettings) -> str:
    """``config.pbtxt`` for NVIDIA Triton's onnxruntime or tensorrt backend."""
    check_settings_fit(metadata, settings)
    height, width = metadata.input_hw
    batch_dim = [] if settings.batching else [metadata.fixed_batch or 1]
    input_dims = ", ".join(map(str, [*batch_dim, 3, height, width]))
    output_dims = ", ".join(map(str, [*batch_dim, *metadata.output_dims]))
    lines = [
        f'name: "{check_model_name(name)}"',
        f'backend: "{backend}"',
        f"max_batch_size: {settings.max_batch_size}",
        "input [",
        "  {",
        f'    name: "{metadata.input_name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {input_dims} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{metadata.output_name}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {output_dims} ]",
        "  }",
        "]",
    ]
    if settings.batching:
        lines.append("dynamic_batching {")
        if settings.preferred_batch_sizes:
            lines.append(f"  preferred_batch_size: [ {', '.join(map(str, settings.preferred_batch_sizes))} ]")
        lines += [f"  max_queue_delay_microseconds: {settings.max_queue_delay_us}", "}"]
    if settings.version_policy is VersionPolicy.ALL:
        lines.append("version_policy: { all { } }")
    else:
        lines.append("version_policy: { latest { num_versions: 1 } }")
    kind = "KIND_GPU" if settings.gpu else "KIND_CPU"
    lines += ["instance_group [", "  {", f"    count: {settings.instance_count}", f"    kind: {kind}", "  }", "]"]
    return "\n".join(lines) + "\n"


def check_settings_fit(metadata: VersionMetadata, settings: ModelSettings) -> None:
    """Refuse serving settings the model's files cannot take: batching a model exported with a fixed batch."""
    if settings.batching and metadata.fixed_batch is not None:
        raise ModelRepositoryError(
            f"the model was exported with a fixed batch of {metadata.fixed_batch}, so Triton cannot batch it "
            f"(max_batch_size {settings.max_batch_size}); serve it without batching (--max-batch-size 0) or "
            f"{DYNAMIC_EXPORT_HINT}"
        )


def default_settings(metadata: VersionMetadata) -> ModelSettings:
    """A new model's settings: dynamic batching for a dynamic-batch export, none for a fixed one."""
    return ModelSettings() if metadata.fixed_batch is None else ModelSettings(max_batch_size=0)


def read_onnx_metadata(model_file: Path, lineage: dict[str, Any] | None = None) -> VersionMetadata:
    """Read an exported model's metadata, and its output shape by one inference on zeros."""
    from lineqa.serving.onnx_model import OnnxModel  # ONNX Runtime is needed only when adding a model

    model = OnnxModel(model_file)
    spec = model.spec
    output = model.infer(np.zeros((model.fixed_batch or 1, 3, *spec.input_hw), np.uint8))
    return VersionMetadata(
        class_names=spec.class_names,
        input_hw=spec.input_hw,
        head=spec.head,
        output_dims=(int(output.shape[1]), int(output.shape[2])),
        stride=spec.stride,
        input_name=model.session.get_inputs()[0].name,
        output_name=model.session.get_outputs()[0].name,
        sha256=hashlib.sha256(model_file.read_bytes()).hexdigest(),
        lineage=dict(lineage or {}),
        fixed_batch=model.fixed_batch,
        input_encoding=spec.input_encoding,
    )


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    backend: str
    metadata: VersionMetadata

    @property
    def model_file(self) -> Path:
        return self.path / next(f for f, b in MODEL_FILES.items() if b == self.backend)


class ModelRepository:
    """A model repository folder: add versions, list them, validate the whole."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def settings(self, name: str) -> ModelSettings:
        """The serving settings a model's config was generated from (defaults for a new model)."""
        path = self.root / check_model_name(name) / SETTINGS_NAME
        return ModelSettings.from_json(path.read_text()) if path.is_file() else ModelSettings()

    def model_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every complete version of a model, oldest first."""
        folder = self.root / check_model_name(name)
        found = []
        for child in folder.iterdir() if folder.is_dir() else []:
            if not child.name.isdigit() or int(child.name) < 1:
                continue
            backend = next((b for f, b in MODEL_FILES.items() if (child / f).is_file()), None)
            meta_file = child / METADATA_NAME
            if backend is None or not meta_file.is_file():
                continue
            metadata = VersionMetadata.from_json(meta_file.read_text())
            found.append(ModelVersion(name, int(child.name), child, backend, metadata))
        return sorted(found, key=lambda v: v.version)

    def latest(self, name: str) -> ModelVersion:
        versions = self.versions(name)
        if not versions:
            raise ModelRepositoryError(f"model {name!r} has no version in {self.root}")
        return versions[-1]

    def promotions(self, name: str) -> PromotionLog:
        return PromotionLog(self.root / check_model_name(name))

    def serving_version(self, name: str) -> ModelVersion:
        """The version on the line: the promoted one, or the newest for a model never promoted."""
        promoted = self.promotions(name).promoted()
        return self.latest(name) if promoted is None else self.version(name, promoted)

    def version(self, name: str, version: int | None) -> ModelVersion:
        """A given version, or the one on the line for ``None`` (see :meth:`serving_version`)."""
        if version is None:
            return self.serving_version(name)
        for candidate in self.versions(name):
            if candidate.version == version:
                return candidate
        raise ModelRepositoryError(f"model {name!r} has no version {version} in {self.root}")

    def add_version(
        self,
        name: str,
        model_file: Path,
        lineage: dict[str, Any] | None = None,
        settings: ModelSettings | None = None,
    ) -> ModelVersion:
        """Copy an exported ONNX model in as the next version, with its metadata; rewrite ``config.pbtxt``.

        ``settings`` replaces the model's serving settings; by default the current ones are kept (for a new
        model: :func:`default_settings`). Refused, with nothing written: a model whose shape differs from the
        model's other versions (a new model name is the way), or settings its files cannot take.
        """
        check_model_name(name)
        metadata = read_onnx_metadata(Path(model_file), lineage)
        existing = self.versions(name)
        _check_fits(name, existing, metadata, str(model_file))
        chosen = settings or (self.settings(name) if existing else default_settings(metadata))
        check_settings_fit(metadata, chosen)
        number = max((v.version for v in existing), default=0) + 1
        self._place(name, number, {"model.onnx": Path(model_file), METADATA_NAME: metadata.to_json()})
        self._write_config(name, "onnxruntime", metadata, chosen)
        return self.version(name, number)

    def install_version(
        self, name: str, number: int, files: Mapping[str, Path], settings: ModelSettings
    ) -> ModelVersion:
        """Put in a version made in another repository (a plant installing its hub's bundle) under the number it
        has there, its files as they are (the model file and ``lineqa.json``, with the lineage recorded there),
        and serve the model with ``settings``. Refused, with nothing written: a number already taken, files that
        are not one model file and its metadata, a shape that differs from the model's other versions."""
        check_model_name(name)
        model_files = [f for f in files if f in MODEL_FILES]
        if len(model_files) != 1 or set(files) != {model_files[0], METADATA_NAME}:
            raise ModelRepositoryError(
                f"a version is one of {sorted(MODEL_FILES)} and {METADATA_NAME}, not {sorted(files)}"
            )
        metadata = VersionMetadata.from_json(files[METADATA_NAME].read_text())
        existing = self.versions(name)
        if any(v.version == number for v in existing):
            raise ModelRepositoryError(f"model {name!r} has a version {number} already")
        _check_fits(name, existing, metadata, f"version {number}")
        check_settings_fit(metadata, settings)
        self._place(name, number, dict(files))
        newest = self.latest(name)
        self._write_config(name, newest.backend, newest.metadata, settings)
        return self.version(name, number)

    def _place(self, name: str, number: int, files: Mapping[str, Path | str]) -> None:
        """Write a version's files (copied from a path, or text) into a folder beside the versions, then rename
        it into place: a server scanning the repository sees the whole version or none of it."""
        folder = self.root / name
        private_folder(self.root.parent)  # a home made by this is private; the repository is Triton's to read
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{number}-", dir=folder))
        try:
            for file_name, content in files.items():
                if isinstance(content, Path):
                    shutil.copyfile(content, staging / file_name)
                else:
                    (staging / file_name).write_text(content)
            os.rename(staging, folder / str(number))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def rename(self, name: str, new_name: str) -> None:
        """Give a model another name (its folder, and the name in its generated config): Triton sees the old
        model go and a new one come, so the gateways serving it are restarted after this."""
        check_model_name(new_name)
        latest = self.latest(name)
        if (self.root / new_name).exists():
            raise ModelRepositoryError(f"{self.root / new_name} exists already")
        os.rename(self.root / name, self.root / new_name)
        self._write_config(new_name, latest.backend, latest.metadata, self.settings(new_name))

    def _write_config(self, name: str, backend: str, metadata: VersionMetadata, settings: ModelSettings) -> None:
        for file_name, text in (
            (SETTINGS_NAME, settings.to_json()),
            (CONFIG_NAME, render_config(name, backend, metadata, settings)),
        ):
            path = self.root / name / file_name
            staging = path.with_name(f".{file_name}.tmp")
            staging.write_text(text)
            os.replace(staging, path)

    def check(self) -> list[str]:
        """Every problem that would stop Triton or the gateway from serving this repository (empty: fine)."""
        problems: list[str] = []
        if not self.root.is_dir():
            return [f"{self.root}: not a folder"]
        names = self.model_names()
        if not names:
            problems.append(f"{self.root}: no models")
        for name in names:
            problems += self._check_model(name)
        return problems

    def _check_model(self, name: str) -> list[str]:
        folder = self.root / name
        if not _NAME_PATTERN.match(name):
            return [f"{folder}: invalid model name"]
        problems = [
            f"{child}: not a version folder (versions are positive integers)"
            for child in folder.iterdir()
            if child.is_dir() and not child.name.startswith(".") and not (child.name.isdigit() and int(child.name) > 0)
        ]
        for child in folder.iterdir():
            if child.is_dir() and child.name.isdigit():
                if not any((child / f).is_file() for f in MODEL_FILES):
                    problems.append(f"{child}: no model.onnx or model.plan")
                if not (child / METADATA_NAME).is_file():
                    problems.append(f"{child}: no {METADATA_NAME} (class names, input size, head)")
        versions = self.versions(name)
        if not versions:
            return [*problems, f"{folder}: no complete version"]
        latest = versions[-1]
        settings = self.settings(name)
        for version in versions[:-1]:
            differences = latest.metadata.shape_differences(version.metadata)
            if differences:
                problems.append(
                    f"{version.path}: differs from v{latest.version} ({'; '.join(differences)}); "
                    "Triton serves one configuration per model"
                )
        for version in versions:
            digest = hashlib.sha256(version.model_file.read_bytes()).hexdigest()
            if version.metadata.sha256 and digest != version.metadata.sha256:
                problems.append(f"{version.model_file}: content changed since it was added (sha256 mismatch)")
            elif version.backend == "onnxruntime":
                problems += _file_disagreements(version, settings)
            head_dims = version.metadata.output_dims
            expected = 4 + len(version.metadata.class_names)
            if version.metadata.head is HeadKind.NMS and head_dims[0] != expected:
                problems.append(f"{version.path}: NMS-head output {head_dims} does not fit {expected - 4} classes")
        config = folder / CONFIG_NAME
        try:
            wanted = render_config(name, latest.backend, latest.metadata, settings)
        except ModelRepositoryError as exc:
            return [*problems, f"{config}: {exc}"]
        if not config.is_file():
            problems.append(f"{config}: missing")
        elif config.read_text() != wanted:
            problems.append(f"{config}: differs from the generated configuration (edited by hand, or stale)")
        return problems


def _check_fits(name: str, existing: list[ModelVersion], metadata: VersionMetadata, source: str) -> None:
    """Refuse a version whose shape differs from the model's others: they share one Triton configuration."""
    differences = existing[-1].metadata.shape_differences(metadata) if existing else []
    if differences:
        raise ModelRepositoryError(
            f"{source} does not fit model {name!r} (its versions {[v.version for v in existing]}): "
            f"{'; '.join(differences)}. All versions of a model share one Triton configuration: "
            "add it under a new model name"
        )


def _file_disagreements(version: ModelVersion, settings: ModelSettings) -> list[str]:
    """Where a version's ONNX file disagrees with its recorded metadata or the model's configuration."""
    from lineqa.serving.onnx_model import OnnxModel

    try:
        model = OnnxModel(version.model_file)
    except ModelLoadError as exc:
        return [f"{version.model_file}: {exc}"]
    recorded = version.metadata
    problems = []
    if model.fixed_batch != recorded.fixed_batch:
        problems.append(
            f"{version.model_file}: the file's batch is {_batch_text(model.fixed_batch)}, "
            f"{METADATA_NAME} says {_batch_text(recorded.fixed_batch)}"
        )
    if model.fixed_batch is not None and settings.batching:
        problems.append(
            f"{version.model_file}: exported with a fixed batch of {model.fixed_batch}, but the configuration batches "
            f"up to {settings.max_batch_size}: Triton would refuse every batch of two or more ({DYNAMIC_EXPORT_HINT}, "
            "or 'lineqa models add NAME FILE --max-batch-size 0' under a new name)"
        )
    if model.spec.input_hw != recorded.input_hw:
        problems.append(f"{version.model_file}: input {model.spec.input_hw}, {METADATA_NAME} says {recorded.input_hw}")
    if model.spec.class_names != recorded.class_names:
        problems.append(f"{version.model_file}: classes {model.spec.class_names} differ from {METADATA_NAME}")
    if model.spec.head is not recorded.head:
        problems.append(
            f"{version.model_file}: a {model.spec.head.value} head, {METADATA_NAME} says {recorded.head.value}"
        )
    return problems
