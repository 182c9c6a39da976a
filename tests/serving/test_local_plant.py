"""The single-machine plant refuses a recipe whose golden sample its home does not hold, as ``lineqa recipes set``
does: the demo stores its golden sample first, and a plant provisioned otherwise would judge no part."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.references import references_of
from lineqa.vision.errors import RecipeError
from tests.helpers.boards import board


def _recipe(reference_id: str) -> str:
    return f'id: golden\nmodel: {{name: deeppcb}}\nreference: {{image: "{reference_id}"}}\n'


def test_a_recipe_naming_a_reference_the_home_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="has no reference"):
        provision_local_plant(tmp_path, recipes={"golden": _recipe("f" * 64)})


def test_a_recipe_naming_a_stored_reference_is_set(tmp_path: Path) -> None:
    reference_id = references_of(tmp_path).add("demo", cv2.imencode(".png", board())[1].tobytes())
    plant = provision_local_plant(tmp_path, recipes={"golden": _recipe(reference_id)})
    assert plant.tenant == "demo"
