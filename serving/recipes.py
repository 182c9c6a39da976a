"""Recipes as versioned, audited records of a tenant, and the lookup the gateway judges with.

A recipe belongs to a tenant (``acme/pcb-top``). ``lineqa recipes set`` validates a YAML text and stores it as
the recipe's next version with who set it, when (server UTC) and why; versions are never rewritten (the
database refuses UPDATE and DELETE), and the newest is the version in force. Setting the same content again
adds nothing. The text is kept as it was set, comments included; its content hash (the recipe's ``version``)
is what every result and record names, so a verdict is reproducible from (image, model version, recipe version)
and ``lineqa recipes history`` turns that hash into who, when and why.

There is no recipe file for anyone to edit by hand: the database is the only source, shared by every gateway
replica. A recipe may name only a model its tenant may use (:mod:`lineqa.serving.model_access`), checked when
it is set and again whenever the gateway loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lineqa.content_store import TENANT_ID
from lineqa.db import as_utc, tenant_scope
from lineqa.serving.database import DatabaseError, database_url, open_database
from lineqa.serving.model_access import may_use
from lineqa.serving.references import ReferenceStore
from lineqa.serving.schema import recipe_versions
from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import Recipe, load_recipe, parse_recipe

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RecipeStoreError(DatabaseError):
    """The recipe versions cannot be read or written now (the database failed, not the recipe)."""


@dataclass(frozen=True)
class RecipeRef:
    tenant: str
    recipe_id: str
    number: int | None = None  # None: the version in force

    def __str__(self) -> str:
        return f"{self.tenant}/{self.recipe_id}" + (f"@{self.number}" if self.number else "")


def parse_ref(ref: str) -> RecipeRef:
    """``<tenant>/<recipe>[@<version number>]``."""
    head, at, number = ref.partition("@")
    tenant, _, recipe_id = head.partition("/")
    if not TENANT_ID.match(tenant) or not _ID.match(recipe_id) or (at and not number.isdigit()):
        raise RecipeError(f"recipe reference {ref!r} is not <tenant>/<recipe>[@<version number>]")
    return RecipeRef(tenant, recipe_id, int(number) if at else None)


@dataclass(frozen=True)
class RecipeVersion:
    tenant: str
    recipe_id: str
    number: int
    sha256: str
    yaml: str
    set_by: str
    set_at: datetime
    reason: str

    @property
    def ref(self) -> RecipeRef:
        return RecipeRef(self.tenant, self.recipe_id, self.number)

    def recipe(self) -> Recipe:
        return parse_recipe(self.yaml, str(self.ref))


def _check_model(conn: Connection, tenant: str, recipe: Recipe) -> None:
    if not may_use(conn, tenant, recipe.model.name):
        raise RecipeError(
            f"recipe {recipe.id!r} names model {recipe.model.name!r}, which tenant {tenant!r} may not use: its own "
            f"models are named '{tenant}.<model>'; a platform model needs 'lineqa models allow'"
        )


class RecipeStore:
    """Every version of every recipe (synchronous: call it from a worker thread in async code)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def set(
        self, ref: RecipeRef, text: str, *, by: str, reason: str, references: ReferenceStore | None = None
    ) -> tuple[RecipeVersion, bool]:
        """Store ``text`` as the recipe's next version; (the version in force, whether it is new).

        Given the tenant's ``references``, a recipe naming a golden sample that is not among them is refused:
        every frame it judged would be an ERROR.
        """
        recipe = parse_recipe(text, str(ref))
        if references is not None:
            references.check(ref.tenant, recipe)
        if recipe.id != ref.recipe_id:
            raise RecipeError(f"the YAML declares id {recipe.id!r}, not {ref.recipe_id!r}")
        if not by.strip() or not reason.strip():
            raise RecipeError("a recipe change needs who makes it and why (--by, --reason): the audit trail keeps both")
        try:
            with tenant_scope(self.engine, ref.tenant).begin() as conn:
                _check_model(conn, ref.tenant, recipe)
                current = self._latest(conn, ref)
                if current is not None and current.sha256 == recipe.version:
                    return current, False
                row = {"tenant_id": ref.tenant, "recipe_id": ref.recipe_id, "sha256": recipe.version, "yaml": text,
                       "number": current.number + 1 if current else 1, "set_by": by, "reason": reason,
                       "set_at": datetime.now(timezone.utc)}  # fmt: skip
                conn.execute(recipe_versions.insert().values(**row))
                return _version(row), True
        except IntegrityError as exc:  # another change won the race for this number, or no such tenant
            raise RecipeError(f"{ref} was not set: it changed meanwhile, or tenant {ref.tenant!r} does not exist; "
                              "look at its history and set it again") from exc  # fmt: skip
        except SQLAlchemyError as exc:
            raise RecipeStoreError(f"cannot store {ref}: {exc}") from exc

    def version(self, ref: RecipeRef) -> RecipeVersion:
        """The version ``ref`` names (the one in force without a number); RecipeError if there is none."""
        with self._read(ref.tenant) as conn:
            found = self._latest(conn, ref)
        if found is None:
            raise RecipeError(f"no recipe {ref.recipe_id!r}" + (f" version {ref.number}" if ref.number else ""))
        return found

    def in_force(self, tenant: str, recipe_id: str) -> Recipe:
        """The recipe to judge with now, after checking that its tenant may still use its model."""
        ref = RecipeRef(tenant, recipe_id)
        with self._read(tenant) as conn:
            found = self._latest(conn, ref)
            if found is None:
                raise RecipeError(f"no recipe {recipe_id!r}")
            recipe = found.recipe()
            _check_model(conn, tenant, recipe)
        return recipe

    def with_hash(self, tenant: str, recipe_id: str, sha256: str) -> Recipe | None:
        """The version of a recipe whose content hash is ``sha256`` (what a record names), or None."""
        r = recipe_versions.c
        query = select(recipe_versions).where(r.tenant_id == tenant, r.recipe_id == recipe_id, r.sha256 == sha256)
        with self._read(tenant) as conn:
            row = conn.execute(query.limit(1)).mappings().first()
        return _version(row).recipe() if row else None

    def history(self, ref: RecipeRef) -> list[RecipeVersion]:
        """Every version, oldest first."""
        r = recipe_versions.c
        query = select(recipe_versions).where(r.tenant_id == ref.tenant, r.recipe_id == ref.recipe_id)
        with self._read(ref.tenant) as conn:
            return [_version(row) for row in conn.execute(query.order_by(r.number)).mappings()]

    def ids(self, tenant: str) -> list[tuple[str, int]]:
        """(recipe id, number of the version in force) of each of the tenant's recipes."""
        r = recipe_versions.c
        query = select(r.recipe_id, func.max(r.number)).where(r.tenant_id == tenant).group_by(r.recipe_id)
        with self._read(tenant) as conn:
            return sorted((recipe_id, int(number)) for recipe_id, number in conn.execute(query))

    @contextlib.contextmanager
    def _read(self, tenant: str) -> Iterator[Connection]:
        try:
            with tenant_scope(self.engine, tenant).connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise RecipeStoreError(f"cannot read the recipes of {tenant!r}: {exc}") from exc

    @staticmethod
    def _latest(conn: Connection, ref: RecipeRef) -> RecipeVersion | None:
        r = recipe_versions.c
        query = select(recipe_versions).where(r.tenant_id == ref.tenant, r.recipe_id == ref.recipe_id)
        query = query.where(r.number == ref.number) if ref.number else query.order_by(r.number.desc()).limit(1)
        row = conn.execute(query).mappings().first()
        return _version(row) if row else None


def _version(data: Mapping[Any, Any]) -> RecipeVersion:
    return RecipeVersion(
        tenant=data["tenant_id"],
        recipe_id=data["recipe_id"],
        number=int(data["number"]),
        sha256=data["sha256"],
        yaml=data["yaml"],
        set_by=data["set_by"],
        set_at=as_utc(data["set_at"]),
        reason=data["reason"],
    )


PIN_KEEP_S = 600.0


class RecipeBook:
    """What the gateway judges with: a tenant's recipe in force, remembered for ``ttl_s`` so that frames do not
    query the database each; a new version is in force for every frame from ``ttl_s`` after it was set.

    It also remembers which model versions the recipes that frames named pin (:meth:`pinned_models`), so that
    the embedded Triton keeps them loaded. Only recipes in use are known (a gateway, connecting as the
    application role, sees one tenant at a time): the first frame of a recipe newly pinning a version that is not
    loaded gets MODEL_UNAVAILABLE, a transient error its camera agent sends again once the version is loaded,
    within a few seconds."""

    def __init__(self, store: RecipeStore, ttl_s: float = 1.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, Recipe]] = {}
        self._pins: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    async def get(self, tenant: str, requested: str) -> Recipe:
        """The recipe a frame of ``tenant`` names (``<recipe>``, or ``<tenant>/<recipe>`` with its own tenant);
        another tenant's recipe is :class:`RecipeError` exactly like one that does not exist."""
        owner, slash, recipe_id = requested.rpartition("/")
        if (slash and owner != tenant) or not _ID.match(recipe_id):
            raise RecipeError(f"no recipe {requested!r}")
        key = (tenant, recipe_id)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        recipe = await asyncio.to_thread(self.store.in_force, tenant, recipe_id)
        now = time.monotonic()
        with self._lock:
            self._cache[key] = (now, recipe)
            if recipe.model.version is not None:
                self._pins[(recipe.model.name, recipe.model.version)] = now
        return recipe

    def pinned_models(self) -> set[tuple[str, int]]:
        """(model, version) that recipes in use pin (named by a frame in the last ``PIN_KEEP_S``): the server
        keeps those loaded; a pin nobody used for that long is let go, and its version unloaded."""
        now = time.monotonic()
        with self._lock:
            self._pins = {pin: seen for pin, seen in self._pins.items() if now - seen < PIN_KEEP_S}
            return set(self._pins)


def find_recipe(ref: str, home: Path, db: str | None = None) -> Recipe:
    """A recipe named on a command line: a YAML file's path, or ``<tenant>/<recipe>[@N]`` in the database of
    ``home`` (or ``db``)."""
    path = Path(ref).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_recipe(path)
    wanted = parse_ref(ref)
    engine = open_database(database_url(home, db))
    try:
        return RecipeStore(engine).version(wanted).recipe()
    finally:
        engine.dispose()
