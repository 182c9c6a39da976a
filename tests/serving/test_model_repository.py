"""The model repository: Triton's layout, generated configs (golden files, Triton's own schema), checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lineqa.serving.embedded_triton import served_versions
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_repository import (
    ModelRepository,
    ModelSettings,
    VersionMetadata,
    VersionPolicy,
    render_config,
)
from lineqa.serving.promotions import event
from lineqa.training.errors import TrainingError
from lineqa.training.registry import rollback
from lineqa.vision.yolo_output import HeadKind

GOLDEN = Path(__file__).parent / "golden"
NMS_META = VersionMetadata(("open", "short", "copper"), (640, 640), HeadKind.NMS, (7, 8400))
E2E_META = VersionMetadata(("scratch", "dent"), (384, 640), HeadKind.END_TO_END, (300, 6))
CASES = {
    "onnx_defaults": ("onnxruntime", NMS_META, ModelSettings()),
    "onnx_latest_preferred": (
        "onnxruntime",
        E2E_META,
        ModelSettings(max_batch_size=8, preferred_batch_sizes=(4, 8), version_policy=VersionPolicy.LATEST),
    ),
    "tensorrt_gpu": ("tensorrt", NMS_META, ModelSettings(max_batch_size=32, instance_count=2, gpu=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_matches_golden_file_and_triton_schema(case: str) -> None:
    backend, metadata, settings = CASES[case]
    text = render_config("pcb-defects", backend, metadata, settings)
    golden = GOLDEN / f"{case}.pbtxt"
    if os.environ.get("LINEQA_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered config differs from {golden} (LINEQA_UPDATE_GOLDEN=1 rewrites it)"
    config = text_format.Parse(text, model_config_pb2.ModelConfig())  # Triton's own ModelConfig message
    assert config.name == "pcb-defects" and config.backend == backend
    assert config.max_batch_size == settings.max_batch_size
    assert list(config.input[0].dims) == [3, *metadata.input_hw]
    assert list(config.output[0].dims) == list(metadata.output_dims)
    assert config.dynamic_batching.max_queue_delay_microseconds == settings.max_queue_delay_us
    assert config.version_policy.HasField("all" if settings.version_policy is VersionPolicy.ALL else "latest")


def test_add_versions_then_check(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "models")
    first = repo.add_version("metal", tiny_models["yolo11n"], lineage={"dataset": "acme/metal@3"})
    second = repo.add_version("metal", tiny_models["yolo11n"])
    assert (first.version, second.version) == (1, 2)
    assert repo.latest("metal").version == 2 and repo.version("metal", 1).metadata.lineage == {
        "dataset": "acme/metal@3"
    }
    assert first.metadata.class_names == ("scratch", "dent", "stain")
    assert first.metadata.output_dims == (7, 2100)  # 4 + 3 classes, 320 px: 40² + 20² + 10² anchors
    assert (tmp_path / "models" / "metal" / "1" / "model.onnx").is_file()
    assert repo.check() == []
    e2e = repo.add_version("metal-e2e", tiny_models["yolo26n"])
    assert e2e.metadata.head is HeadKind.END_TO_END and e2e.metadata.output_dims == (300, 6)
    assert repo.check() == []


def test_settings_are_kept_and_used_by_the_check(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    repo.add_version("m", tiny_models["yolo11n"], settings=ModelSettings(max_batch_size=4))
    repo.add_version("m", tiny_models["yolo11n"])  # keeps max_batch_size 4
    assert "max_batch_size: 4" in (tmp_path / "m" / "config.pbtxt").read_text()
    assert repo.check() == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda root: (root / "m" / "config.pbtxt").write_text("name: 'm'\n"), "differs from the generated"),
        (lambda root: (root / "m" / "config.pbtxt").unlink(), "config.pbtxt: missing"),
        (lambda root: (root / "m" / "latest").mkdir(), "not a version folder"),
        (lambda root: (root / "m" / "3").mkdir(), "no model.onnx or model.plan"),
        (lambda root: (root / "m" / "1" / "lineqa.json").unlink(), "no lineqa.json"),
        (lambda root: (root / "m" / "1" / "model.onnx").write_bytes(b"tampered"), "sha256 mismatch"),
        (lambda root: shutil.rmtree(root / "m"), "no models"),
    ],
    ids=["hand-edited", "no-config", "bad-folder", "empty-version", "no-metadata", "tampered", "empty-repo"],
)
def test_check_reports_each_problem(damage, problem: str, tiny_models: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = ModelRepository(tmp_path)
    repo.add_version("m", tiny_models["yolo11n"])
    damage(tmp_path)
    problems = repo.check()
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 101])
def test_model_names_cannot_escape_the_repository(name: str, tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    with pytest.raises(ModelRepositoryError, match="invalid model name"):
        ModelRepository(tmp_path).add_version(name, tiny_models["yolo11n"])
    assert list(tmp_path.iterdir()) == []


def test_unknown_versions_are_clear_errors(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    repo = ModelRepository(tmp_path)
    with pytest.raises(ModelRepositoryError, match="has no version"):
        repo.latest("absent")
    repo.add_version("m", tiny_models["yolo11n"])
    with pytest.raises(ModelRepositoryError, match="has no version 7"):
        repo.version("m", 7)


def test_models_cli(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    def lineqa(*args: object) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lineqa.cli", "models", "--repo", str(tmp_path), *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert lineqa("repo", "--check").returncode == 1
    added = lineqa("add", "metal", tiny_models["yolo11n"], "--max-batch-size", "8")
    assert added.returncode == 0 and "added metal version 1" in added.stdout
    assert "scratch, dent, stain" in lineqa("list").stdout
    checked = lineqa("repo", "--check")
    assert checked.returncode == 0 and "ok (1 models)" in checked.stdout
    (tmp_path / "metal" / "config.pbtxt").write_text("edited")
    failed = lineqa("repo", "--check")
    assert failed.returncode == 1 and "differs from the generated configuration" in failed.stderr


def test_the_line_follows_promotions_and_rollbacks(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    repo = ModelRepository(tmp_path)
    for _ in range(3):
        repo.add_version("m", tiny_models["yolo11n"])
    assert repo.serving_version("m").version == 3  # never promoted: the newest, as Triton would
    with pytest.raises(TrainingError, match="nothing to roll back to"):
        rollback(repo, "m")
    log = repo.promotions("m")
    for version in (1, 2):
        log.append(event("promote", version, by="qa"))
    assert repo.serving_version("m").version == 2 and repo.version("m", None).version == 2
    assert served_versions(repo) == {"m": 2}
    assert rollback(repo, "m", reason="escapes on line 3", by="qa") == 1
    assert repo.serving_version("m").version == 1 and served_versions(repo) == {"m": 1}
    actions = [(e.action, e.previous, e.version, e.by) for e in log.events()]  # old and new version, who
    assert actions == [("promote", None, 1, "qa"), ("promote", 1, 2, "qa"), ("rollback", 2, 1, "qa")]
    assert log.events()[-1].reason == "escapes on line 3" and log.events()[-1].details == {"from": 2}
    assert repo.check() == []  # the audit file beside the versions is not a problem for Triton
    listed = subprocess.run(
        [sys.executable, "-m", "lineqa.cli", "models", "--repo", str(tmp_path), "list"], capture_output=True, text=True
    )
    marks = [line.split()[0] for line in listed.stdout.splitlines()]
    assert listed.returncode == 0 and marks == ["*", "m", "m"]  # v1 is back on the line
