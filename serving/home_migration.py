"""Bringing a home made by an earlier lineqa up to tenant-scoped recipes and models and private secrets.

``lineqa admin migrate-home --tenant acme`` (with the gateway stopped):

- recipe files in ``<home>/recipes/*.yaml`` become version 1 of ``acme/<file name>`` in the database, each
  recorded as imported from its file, and the folder is renamed ``recipes.imported`` (nothing reads it);
- models without a tenant prefix become ``acme.<model>`` (``--models tenant``, the default: they were that
  plant's) or stay platform models that ``acme`` is allowed to use (``--models platform``); recipes naming
  them are imported with the new name;
- a CA key inside the home moves to the CA folder (:mod:`lineqa.serving.pki`); cameras keep trusting it;
- the home, its database and image store become private to their user (0700 folders, 0600 database).

:func:`home_problems` names what is left to do; ``lineqa serve`` prints it at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine

from lineqa.serving.model_access import ModelGrants, model_owner, tenant_model_name
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pki import PlantPki
from lineqa.serving.recipes import RecipeRef, RecipeStore
from lineqa.vision.errors import RecipeError

LEGACY_RECIPES = "recipes"
IMPORTED_RECIPES = "recipes.imported"
PRIVATE = {"": 0o700, "lineqa.db": 0o600, "lineqa.db-wal": 0o600, "lineqa.db-shm": 0o600, "images": 0o700,
           "references": 0o700, "pki": 0o700}  # fmt: skip
WATCHED = ("lineqa.db", "lineqa.db-wal", "lineqa.db-shm", "images", "references")


def home_problems(home: Path) -> list[str]:
    """What in ``home`` still needs ``lineqa admin migrate-home`` (empty: nothing)."""
    problems = []
    stray = PlantPki(home / "pki").stray_ca_key
    if stray.is_file():
        problems.append(f"the plant CA's private key is inside the home ({stray}): the gateway does not need it")
    legacy = sorted((home / LEGACY_RECIPES).glob("*.yaml"))
    if legacy:
        problems.append(f"{len(legacy)} recipe file(s) in {home / LEGACY_RECIPES} are not read: recipes are records")
    for name in WATCHED:  # the home and pki/ may be a container's mounts, whose modes are not lineqa's to judge
        path = home / name
        if path.exists() and path.stat().st_mode & 0o077:
            problems.append(f"{path} is readable by other users (mode {path.stat().st_mode & 0o777:o})")
    if problems:
        problems.append("'lineqa admin migrate-home --tenant <tenant>' fixes these")
    return problems


@dataclass(frozen=True)
class HomeMigration:
    tenant: str
    models_as_tenant: bool = True  # False: they stay platform models the tenant is allowed to use
    by: str = "lineqa admin migrate-home"


def migrate_home(home: Path, engine: Engine, plan: HomeMigration, pki: PlantPki | None = None) -> list[str]:
    """Do what :func:`home_problems` finds; what was done, one line each."""
    done: list[str] = []
    repository = ModelRepository(home / "models")
    renamed: dict[str, str] = {}
    for name in [n for n in repository.model_names() if model_owner(n) is None]:
        if plan.models_as_tenant:
            renamed[name] = tenant_model_name(plan.tenant, name)
            repository.rename(name, renamed[name])
            done.append(f"model {name} is now {renamed[name]}")
        else:
            reason = "served to this plant before models were scoped to tenants"
            ModelGrants(engine).change(plan.tenant, name, allowed=True, by=plan.by, reason=reason)
            done.append(f"tenant {plan.tenant} may use platform model {name}")
    done += _import_recipes(home, RecipeStore(engine), plan, renamed)
    moved = (pki or PlantPki(home / "pki")).move_ca_key()
    if moved:
        done.append(f"the CA key moved out of the home to {moved}")
    for name, mode in PRIVATE.items():
        path = home / name
        if path.exists() and path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
            done.append(f"{path} is now mode {mode:o}")
    return done


def _import_recipes(home: Path, store: RecipeStore, plan: HomeMigration, renamed: dict[str, str]) -> list[str]:
    folder = home / LEGACY_RECIPES
    files = sorted(folder.glob("*.yaml"))
    done = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        data: Any = yaml.safe_load(text)
        model = (data.get("model") or {}).get("name") if isinstance(data, dict) else None
        if model in renamed:  # the text is rewritten only when its model was renamed (comments are lost then)
            data["model"]["name"] = renamed[model]
            text = f"# imported from {path.name}\n" + yaml.safe_dump(data, sort_keys=False)
        ref = RecipeRef(plan.tenant, path.stem)
        try:
            version, _ = store.set(ref, text, by=plan.by, reason=f"imported from {path}")
        except RecipeError as exc:
            raise RecipeError(f"{path} was not imported (nothing after it either): {exc}") from exc
        done.append(f"recipe {path.name} is {version.ref}")
    if files:
        os.rename(folder, home / IMPORTED_RECIPES)
        done.append(f"{folder} is now {home / IMPORTED_RECIPES}: edit recipes with 'lineqa recipes set'")
    return done
