"""The model repository: Triton's layout, generated configs (golden files, Triton's own schema), checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_repository import (
    ModelRepository,
    ModelSettings,
    VersionMetadata,
    VersionPolicy,
    render_config,
)
from lineqa.serving.promotions import event
from lineqa.serving.served_models import wanted_versions
from lineqa.training.errors import TrainingError
from lineqa.training.registry import rollback
from lineqa.vision.detector import IMAGE_INPUT, INPUT_METADATA_KEY
from lineqa.vision.reference import ENCODING
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
    "onnx_fixed_batch": ("onnxruntime", replace(NMS_META, fixed_batch=1), ModelSettings(max_batch_size=0)),
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
    batch = [] if settings.batching else [1]
    assert list(config.input[0].dims) == [*batch, 3, *metadata.input_hw]
    assert list(config.output[0].dims) == [*batch, *metadata.output_dims]
    assert config.HasField("dynamic_batching") == settings.batching
    if settings.batching:
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
    assert wanted_versions(repo, ()) == {"m": {2}}
    assert rollback(repo, "m", reason="escapes on line 3", by="qa") == 1
    assert repo.serving_version("m").version == 1 and wanted_versions(repo, ()) == {"m": {1}}
    actions = [(e.action, e.previous, e.version, e.by) for e in log.events()]  # old and new version, who
    assert actions == [("promote", None, 1, "qa"), ("promote", 1, 2, "qa"), ("rollback", 2, 1, "qa")]
    assert log.events()[-1].reason == "escapes on line 3" and log.events()[-1].details == {"from": 2}
    assert repo.check() == []  # the audit file beside the versions is not a problem for Triton
    listed = subprocess.run(
        [sys.executable, "-m", "lineqa.cli", "models", "--repo", str(tmp_path), "list"], capture_output=True, text=True
    )
    marks = [line.split()[0] for line in listed.stdout.splitlines()]
    assert listed.returncode == 0 and marks == ["*", "m", "m"]  # v1 is back on the line


def _with_classes(model: Path, names: dict[int, str], out: Path) -> Path:
    """A copy of an Ultralytics export whose class list says ``names`` (another model's export, in effect)."""
    import onnx

    graph = onnx.load(str(model))
    for prop in graph.metadata_props:
        if prop.key == "names":
            prop.value = repr(names)
    onnx.save(graph, str(out))
    return out


def _with_input_encoding(model: Path, encoding: str, out: Path) -> Path:
    """A copy of an export whose metadata says it was trained on ``encoding`` (as lineqa's export writes it)."""
    import onnx

    graph = onnx.load(str(model))
    onnx.helper.set_model_props(graph, {**{p.key: p.value for p in graph.metadata_props}, INPUT_METADATA_KEY: encoding})
    onnx.save(graph, str(out))
    return out


def test_a_models_input_encoding_is_read_from_its_file_and_kept(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    image = repo.add_version("plain", tiny_models["yolo11n"])
    assert image.metadata.input_encoding == IMAGE_INPUT and not image.metadata.spec("plain", 1).needs_reference
    trained_on_pairs = _with_input_encoding(tiny_models["yolo11n"], ENCODING, tmp_path / "r.onnx")
    with_reference = repo.add_version("golden", trained_on_pairs)
    assert with_reference.metadata.input_encoding == ENCODING
    assert repo.version("golden", 1).metadata.spec("golden", 1).needs_reference  # read back from lineqa.json
    assert VersionMetadata.from_json(image.metadata.to_json()) == image.metadata


def test_a_plain_fixed_batch_export_is_served_without_batching(plain_exports: dict[str, Path], tmp_path: Path) -> None:
    """Ultralytics' default export has input [1, 3, 320, 320]: the configuration must not batch it."""
    repo = ModelRepository(tmp_path)
    for name in ("yolo11n", "yolo26n"):
        version = repo.add_version(name, plain_exports[name])
        assert version.metadata.fixed_batch == 1
        assert repo.settings(name).max_batch_size == 0
        config = text_format.Parse((tmp_path / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
        assert list(config.input[0].dims) == [1, 3, 320, 320]
    # Ultralytics 8.4's plain export of YOLO26 keeps its one-to-many branch (an NMS head, 4 + 3 rows); its
    # end-to-end branch needs nms=False (tiny_models["yolo26n"]): what the file holds is what is served.
    assert repo.version("yolo26n", 1).metadata.head is HeadKind.NMS
    assert repo.version("yolo26n", 1).metadata.output_dims[0] == 7
    assert repo.version("yolo11n", 1).metadata.head is HeadKind.NMS
    assert repo.check() == []


def test_batching_a_fixed_batch_export_is_refused(plain_exports: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelRepositoryError, match=r"fixed batch of 1.*dynamic=True"):
        ModelRepository(tmp_path).add_version("m", plain_exports["yolo11n"], settings=ModelSettings(max_batch_size=8))
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.parametrize(
    ("second", "difference"),
    [
        ("plain", "batch dynamic vs fixed at 1"),
        ("e2e", "head"),
        ("classes", "classes"),
        ("reference", "input encoding"),
    ],
)
def test_a_version_that_needs_another_configuration_is_refused(
    second: str, difference: str, tiny_models: dict[str, Path], plain_exports: dict[str, Path], tmp_path: Path
) -> None:
    repo = ModelRepository(tmp_path / "repo")
    repo.add_version("m", tiny_models["yolo11n"])
    candidates = {
        "plain": plain_exports["yolo11n"],
        "e2e": tiny_models["yolo26n"],
        "classes": _with_classes(tiny_models["yolo11n"], {0: "scratch", 1: "dent", 2: "rust"}, tmp_path / "c.onnx"),
        "reference": _with_input_encoding(tiny_models["yolo11n"], ENCODING, tmp_path / "r.onnx"),
    }
    with pytest.raises(ModelRepositoryError, match=f"{difference}.*new model name"):
        repo.add_version("m", candidates[second])
    assert [v.version for v in repo.versions("m")] == [1]
    assert repo.add_version("m-2", candidates[second]).version == 1  # a new model name is the way


def test_check_reports_a_configuration_that_batches_a_fixed_batch_file(
    plain_exports: dict[str, Path], tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A repository written before models were read for their batch: a fixed-batch file under a batching
    configuration, as the old ``models add`` made it, must not pass the check."""
    repo = ModelRepository(tmp_path)
    repo.add_version("m", tiny_models["yolo11n"])  # dynamic batch, batching configuration
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(plain_exports["yolo11n"].read_bytes())
    metadata = tmp_path / "m" / "1" / "lineqa.json"
    recorded = VersionMetadata.from_json(metadata.read_text())
    metadata.write_text(replace(recorded, sha256="").to_json())  # the old metadata: no hash check, no batch
    problems = repo.check()
    assert any("fixed batch of 1, but the configuration batches up to 16" in p for p in problems), problems


def test_models_add_says_how_a_fixed_batch_export_is_served(plain_exports: dict[str, Path], tmp_path: Path) -> None:
    model = str(plain_exports["yolo11n"])
    cmd = [sys.executable, "-m", "lineqa.cli", "models", "--repo", str(tmp_path), "add", "m", model]
    added = subprocess.run(cmd, capture_output=True, text=True)
    assert added.returncode == 0, added.stderr
    assert "fixed batch of 1: served without batching" in added.stdout and "dynamic=True" in added.stdout
    refused = subprocess.run([*cmd[:-2], "m2", model, "--max-batch-size", "8"],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode == 2 and "fixed batch of 1" in refused.stderr
