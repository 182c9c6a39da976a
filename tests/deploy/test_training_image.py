"""The training image: the serving image's runtime plus torch and Ultralytics, able to do training's work
(here: export the committed DeepPCB detector to ONNX, on a volume, as the image's non-root user).

PyPI's Linux torch is the CUDA build, several GB; the test builds with a local CPU wheel of torch
(``LINEQA_TORCH_WHEELS``, default ``/opt/wheels``, which this project's machines have) and skips, saying so,
where there is none."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.deploy.conftest import ASSET
from tests.deploy.containers import build, engine_or_skip, own_for_image, podman

pytestmark = pytest.mark.slow

WHEELS = Path(os.environ.get("LINEQA_TORCH_WHEELS", "/opt/wheels"))


def test_training_image_exports_a_model(tmp_path: Path) -> None:
    wheels = sorted(WHEELS.glob("torch-*+cpu-*.whl")) if WHEELS.is_dir() else []
    if not wheels:
        pytest.skip(f"no CPU torch wheel in {WHEELS}: the training image would download CUDA torch (several GB)")
    version = re.match(r"torch-([^+-]+)\+cpu", wheels[-1].name)
    assert version, wheels[-1].name
    engine_or_skip()
    built = build("training", "localhost/lineqa-training:test", "--volume", f"{WHEELS}:/wheels:ro",
                  "--build-arg", "TORCH_FIND_LINKS=/wheels", "--build-arg", f"TORCH_VERSION={version[1]}")  # fmt: skip
    print(f"training image built in {built.seconds:.0f} s")

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ASSET, work / ASSET.name)
    own_for_image(work)
    script = (
        "import sys, numpy, torch, ultralytics\n"
        "from importlib.metadata import version\n"
        "from pathlib import Path\n"
        "from lineqa.training.ultralytics_adapter import export_onnx\n"
        f"onnx = export_onnx(Path('/var/lib/lineqa/work/{ASSET.name}'), 320)\n"
        "print('RESULT', torch.__version__, numpy.__version__, version('opencv-python-headless'), onnx)\n"
    )
    done = podman("run", "--rm", "--network", "none", f"--volume={work}:/var/lib/lineqa/work",
                  "--entrypoint", "python", built.tag, "-c", script, timeout_s=300)  # fmt: skip
    (result,) = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RESULT")]
    torch_version, numpy_version, _, onnx = result
    assert torch_version == f"{version[1]}+cpu"
    assert numpy_version.startswith("1.")  # PyTriton's numpy<2 holds in the training image too
    assert onnx == f"/var/lib/lineqa/work/{ASSET.stem}.onnx"
    assert (work / f"{ASSET.stem}.onnx").stat().st_size > 1_000_000
    config = podman("image", "inspect", "--format", "{{.Config.User}}", built.tag).stdout.strip()
    assert config == "lineqa"
