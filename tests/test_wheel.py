"""The distribution owns one import name: a wheel built from the checkout installs only ``lineqa``, and lives
beside Hugging Face's ``datasets`` in one environment, each importing its own package.

Builds the wheel with ``pip wheel`` (as a user would, with build isolation) and installs it with all its
dependencies into a fresh virtual environment, next to ``datasets`` from the registry. About a minute with a
warm pip cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# The newest ``datasets`` needs a pyarrow that needs numpy 2, which PyTriton 0.7 (our embedded Triton) forbids;
# capping pyarrow lets pip pick the newest ``datasets`` that installs beside numpy<2. The clash is over numpy,
# not over import names.
HF_DATASETS = ["datasets", "pyarrow<21"]
PROBE = """
import json, datasets, lineqa, lineqa.datasets, lineqa.datasets.catalog, lineqa.serving.gateway, lineqa.vision
import importlib.util as u
print(json.dumps({
    "hf": datasets.__file__,
    "load_dataset": datasets.load_dataset.__module__,
    "lineqa_datasets": lineqa.datasets.__file__,
    "vision": lineqa.vision.__file__,
    "old_names": [m for m in ("vision", "serving", "training", "protos", "review", "fleet") if u.find_spec(m)],
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(REPO)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    (built,) = out.glob("lineqa-*.whl")
    return built


def test_wheel_holds_nothing_outside_lineqa(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    assert {n.split("/")[0] for n in names} == {"lineqa", dist_info}
    for part in ("vision", "serving", "training", "datasets", "protos", "review"):
        assert f"lineqa/{part}/__init__.py" in names
    # The generated gRPC code and the migrations travel with their parts.
    assert "lineqa/protos/lineqa/inspection/v1/inspection_pb2_grpc.py" in names
    assert any(n.startswith("lineqa/serving/migrations/versions/") for n in names)
    assert not [n for n in names if n.startswith("lineqa/tests/") or "/__pycache__/" in n]


def test_wheel_installs_beside_hugging_face_datasets(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *HF_DATASETS, str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # Run away from the checkout, so that nothing can be found in a source folder by accident.
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    site = env / "lib"
    assert Path(found["hf"]).is_relative_to(site) and Path(found["hf"]).parent.name == "datasets"
    assert found["load_dataset"].startswith("datasets.")
    assert Path(found["lineqa_datasets"]).parts[-3:] == ("lineqa", "datasets", "__init__.py")
    assert Path(found["vision"]).is_relative_to(site)
    assert found["old_names"] == []
    help_text = subprocess.run([str(env / "bin" / "lineqa"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_text.returncode == 0 and "datasets" in help_text.stdout
    datasets_help = subprocess.run(
        [str(env / "bin" / "lineqa"), "datasets", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert datasets_help.returncode == 0 and "import" in datasets_help.stdout
