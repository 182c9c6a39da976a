"""Shared fixtures: the real datasets beside the checkout, and a private lineqa home per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def _shared(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {name!r} not found at {path}: these tests need ../shared/datasets beside the repo")
    return path


@pytest.fixture(scope="session")
def deeppcb_root() -> Path:
    return _shared("deeppcb") / "PCBData"


@pytest.fixture(scope="session")
def neudet_root() -> Path:
    return _shared("neu-det")


@pytest.fixture(scope="session", autouse=True)
def lineqa_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every test's lineqa home (and Ultralytics' settings) out of the user's real home."""
    home = tmp_path_factory.mktemp("lineqa-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LINEQA_HOME", str(home))
    yield home
    mp.undo()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Pictures the test run keeps for people to look at (overlays, screenshots): test-artifacts/."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
