"""The recipes a gateway judges with: a folder of ``<recipe id>.yaml`` files, reloaded when one changes.

An edited recipe takes effect on the next frame without restarting the gateway; its new content hash is the
version every result names. A file that no longer validates is refused with its error, and the previous
version is not silently kept: a frame naming it gets an ERROR result saying why.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import Recipe, load_recipe

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RecipeBook:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._cache: dict[str, tuple[tuple[int, int], Recipe]] = {}
        self._lock = threading.Lock()

    def get(self, recipe_id: str) -> Recipe:
        """The current recipe with this id. Raises RecipeError (unknown id, or an invalid file)."""
        if not _ID.match(recipe_id):
            raise RecipeError(f"invalid recipe id {recipe_id!r}")
        path = self.folder / f"{recipe_id}.yaml"
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise RecipeError(f"no recipe {recipe_id!r} (looked for {path})") from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(recipe_id)
            if cached and cached[0] == stamp:
                return cached[1]
            recipe = load_recipe(path)
            if recipe.id != recipe_id:
                raise RecipeError(f"{path} declares id {recipe.id!r}; the file name must be the recipe id")
            self._cache[recipe_id] = (stamp, recipe)
            return recipe

    def pinned_models(self) -> set[tuple[str, int]]:
        """(model, version) of every recipe that pins a version: the server must keep those loaded. A recipe
        that does not load pins nothing (its frames get its error)."""
        pinned = set()
        for path in sorted(self.folder.glob("*.yaml")) if self.folder.is_dir() else []:
            try:
                recipe = self.get(path.stem)
            except RecipeError:
                continue
            if recipe.model.version is not None:
                pinned.add((recipe.model.name, recipe.model.version))
        return pinned


def find_recipe(ref: str, folder: Path) -> Recipe:
    """A recipe named on a command line: a YAML file's path, or the id of one in ``folder``."""
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_recipe(path)
    return RecipeBook(folder).get(ref)
