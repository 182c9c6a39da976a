"""Fixtures of the deployment tests: the serving image, built once per session, and a plant home to mount."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from tests.deploy.containers import Built, build, engine_or_skip, own_for_image

ASSET = Path(__file__).resolve().parents[1] / "assets" / "deeppcb-yolo11n-320.pt"
RECIPE = "id: pcb\nmodel: {name: deeppcb}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.25}\n"
SERVING_TAG = "localhost/lineqa-serving:test"


@pytest.fixture(scope="session")
def serving_image() -> Built:
    engine_or_skip()
    built = build("serving", SERVING_TAG)
    print(f"serving image built in {built.seconds:.0f} s")
    return built


@pytest.fixture(scope="session")
def deeppcb_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed DeepPCB detector, exported to ONNX at 320 px."""
    adapter = pytest.importorskip("lineqa.training.ultralytics_adapter", reason="needs the train extra")
    work = tmp_path_factory.mktemp("deeppcb-onnx")
    weights = work / ASSET.name
    weights.write_bytes(ASSET.read_bytes())
    return Path(adapter.export_onnx(weights, 320))


@dataclass(frozen=True)
class PlantHome:
    plant: LocalPlant
    token_file: Path  # cam-1's token, outside the mounted home


@pytest.fixture
def plant_home(tmp_path: Path, deeppcb_onnx: Path) -> PlantHome:
    """A home as an operator prepares it for the volume: certificates, tenant acme with camera cam-1 on
    line-1, the DeepPCB model in the repository, recipe 'pcb'; owned by the image's user."""
    home = tmp_path / "home"
    ModelRepository(home / "models").add_version("deeppcb", deeppcb_onnx)
    plant = provision_local_plant(home, tenant="acme", cameras=("cam-1",), recipes={"pcb": RECIPE})
    token = tmp_path / "cam-1.token"
    token.write_text(plant.tokens["cam-1"])
    own_for_image(home)
    return PlantHome(plant, token)
