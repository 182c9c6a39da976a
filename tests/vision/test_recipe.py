"""Recipes: validated YAML, content-hash versions, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import Recipe, load_recipe, parse_recipe

FULL = """
id: pcb-top
description: top side of the controller board
model: {name: pcb-defects, version: 3}
mm_per_px: 0.02
defaults: {fail_confidence: 0.5, review_confidence: 0.3}
classes:
  pin-hole: {fail_confidence: 0.4, min_area_mm2: 0.05}
  copper: {max_count: 2}
include:
  - name: board
    polygon: [[0, 0], [640, 0], [640, 640], [0, 640]]
ignore:
  - name: fiducial
    polygon: [[0, 0], [60, 0], [60, 60], [0, 60]]
tiling: {tile_px: 640, overlap_ratio: 0.25}
"""


def test_full_recipe_parses() -> None:
    recipe = parse_recipe(FULL)
    assert recipe.model.version == 3 and recipe.mm_per_px == 0.02
    assert recipe.rule_for("pin-hole").fail_confidence == 0.4
    assert recipe.rule_for("open") == recipe.defaults
    assert recipe.min_confidence == 0.3
    assert recipe.tiling is not None and recipe.tiling.options().overlap_ratio == 0.25


def test_version_is_a_content_hash() -> None:
    a, b = parse_recipe(FULL), parse_recipe(FULL.replace("description: top side", "description:   top side"))
    assert a.version == b.version and len(a.version) == 64
    # Key order and YAML style do not matter; content does.
    lines = FULL.strip().splitlines()
    reordered_text = "\n".join([lines[2].replace("{name: pcb-defects, version: 3}", "{version: 3, name: pcb-defects}"),
                                 *lines[:2], *lines[3:]])  # fmt: skip
    reordered = parse_recipe(reordered_text)
    assert reordered.version == a.version
    assert parse_recipe(FULL.replace("max_count: 2", "max_count: 3")).version != a.version


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: x\n", r"model: Field required"),
        ("id: x\nmodel: {name: m}\ndefaults: {fail_confidence: 1.5}\n", r"defaults\.fail_confidence"),
        (
            "id: x\nmodel: {name: m}\ndefaults: {fail_confidence: 0.3, review_confidence: 0.5}\n",
            "above fail_confidence",
        ),
        ("id: x\nmodel: {name: m}\nclasses: {scratch: {min_area_mm2: 1}}\n", "classes.scratch.min_area_mm2 needs"),
        ("id: x\nmodel: {name: m}\nignore: [{name: a, polygon: [[0, 0], [1, 1]]}]\n", r"ignore\.0\.polygon"),
        ("id: x\nmodel: {name: m}\ntypo_field: 1\n", "typo_field: Extra inputs are not permitted"),
        ("id: '../etc'\nmodel: {name: m}\n", "id: String should match pattern"),
        ("id: x\nmodel: {name: m, version: 0}\n", r"model\.version"),
        ("id: x\nmodel: {name: m}\ntiling: {tile_px: 8}\n", r"tiling\.tile_px"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("id: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_recipes_name_the_field(text: str, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        parse_recipe(text, "line3.yaml")


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: x\n")
    with pytest.raises(RecipeError, match=f"{path}: invalid recipe"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_rules_for_unknown_classes_are_refused() -> None:
    recipe = parse_recipe(FULL)
    recipe.check_classes(("open", "short", "mousebite", "spur", "copper", "pin-hole"))
    with pytest.raises(RecipeError, match=r"rules for \['pin-hole'\], which model 'pcb-defects' does not detect"):
        recipe.check_classes(("open", "copper"))


def test_recipes_are_immutable() -> None:
    recipe = parse_recipe(FULL)
    with pytest.raises(ValueError, match="frozen"):
        recipe.mm_per_px = 1.0  # type: ignore[misc]
    assert isinstance(recipe, Recipe)


def test_class_rules_inherit_unset_fields_from_defaults() -> None:
    recipe = parse_recipe(FULL)
    pin_hole = recipe.rule_for("pin-hole")
    assert (pin_hole.fail_confidence, pin_hole.review_confidence, pin_hole.min_area_mm2) == (0.4, 0.3, 0.05)
    assert recipe.rule_for("copper").max_count == 2 and recipe.rule_for("copper").review_confidence == 0.3


def test_inherited_band_must_still_fit() -> None:
    text = "id: x\nmodel: {name: m}\ndefaults: {review_confidence: 0.3}\nclasses: {scratch: {fail_confidence: 0.2}}\n"
    with pytest.raises(RecipeError, match=r"classes\.scratch with the defaults: .*above fail_confidence"):
        parse_recipe(text)
