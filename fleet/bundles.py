"""The hub's bundles: what each tenant's plants should run, signed, numbered, and the files they name.

A tenant's bundle is computed from the hub's model repository and database when a plant asks: every model the
tenant may use (its own, ``<tenant>.<model>``, and the platform models it was allowed) at the version on the
line, plus every version one of its recipes pins; the tenant's recipes in force; the platform models granted.
When that content differs from the tenant's newest bundle, it becomes the next bundle: signed and kept
(``fl_bundles``, never rewritten). A rollback on the hub is a new, higher-numbered bundle too, so a plant only
ever moves forward in bundle numbers and an old signed bundle replayed to it is refused.

A file is served only when a bundle of the asking plant's tenant names it; anything else is "no such file",
the same answer for another tenant's model and for one that does not exist.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, Select, select
from sqlalchemy.exc import IntegrityError

from lineqa.db import tenant_scope
from lineqa.fleet.errors import PlantAccessError
from lineqa.fleet.files import file_sha256
from lineqa.fleet.manifest import (
    FORMAT,
    BundleContent,
    BundleFile,
    BundleModel,
    BundleRecipe,
    BundleVersion,
    Manifest,
    Promotion,
)
from lineqa.fleet.schema import bundles
from lineqa.fleet.signing import sign
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_access import may_use, model_owner
from lineqa.serving.model_repository import METADATA_NAME, ModelRepository, ModelVersion
from lineqa.serving.recipes import RecipeRef, RecipeStore, RecipeVersion
from lineqa.training.cluster_models import clusters_behind, outside_clusters
from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import Recipe

logger = logging.getLogger(__name__)
PROMOTING = ("promote", "rollback", "adopt")


@dataclass(frozen=True)
class StoredBundle:
    tenant: str
    number: int
    content_sha256: str
    manifest: bytes
    signature: bytes


def _bundle_file(path: Path, recorded_sha256: str = "") -> BundleFile:
    """A version's file as the bundle names it. The model file's hash is the one recorded when the version was
    published, so a file changed on the hub since then is refused by the plant rather than passed on."""
    return BundleFile(path=path.name, sha256=recorded_sha256 or file_sha256(path), size=path.stat().st_size)


def _version_files(version: ModelVersion) -> tuple[BundleFile, ...]:
    return (_bundle_file(version.model_file, version.metadata.sha256), _bundle_file(version.path / METADATA_NAME))


def _recipe(version: RecipeVersion) -> BundleRecipe:
    return BundleRecipe(recipe_id=version.recipe_id, number=version.number, sha256=version.sha256, yaml=version.yaml,
                        set_by=version.set_by, set_at=version.set_at.isoformat(), reason=version.reason)  # fmt: skip


class HubBundles:
    """Build, sign, keep and serve the tenants' bundles (synchronous: call from a worker thread)."""

    def __init__(self, engine: Engine, repository: ModelRepository, key: Ed25519PrivateKey) -> None:
        self.engine = engine
        self.repository = repository
        self.key = key
        self.recipes = RecipeStore(engine)
        self._manifests: dict[tuple[str, int], Manifest] = {}
        self._lock = threading.Lock()

    def content(self, tenant: str) -> BundleContent:
        """What ``tenant``'s plants should run now."""
        with tenant_scope(self.engine, tenant).connect() as conn:
            granted = [name for name in self.repository.model_names() if may_use(conn, tenant, name)]
        usable = [name for name in granted if self._within_clusters(name, tenant)]
        ids = self.recipes.ids(tenant)
        recipes = [(v, _parsed(v)) for v in (self.recipes.version(RecipeRef(tenant, rid)) for rid, _ in ids)]
        pins = {(r.model.name, r.model.version) for _, r in recipes if r and r.model.version is not None}
        models = [m for m in (self._model(name, pins) for name in usable) if m is not None]
        shipped = {m.name for m in models}
        kept = []
        for version, recipe in recipes:
            if recipe is None:
                continue
            if recipe.model.name in shipped or model_owner(recipe.model.name) == tenant:
                kept.append(_recipe(version))
            else:
                logger.warning("recipe %s/%s names model %s, which tenant %s may not use: left out of its bundle",
                               tenant, version.recipe_id, recipe.model.name, tenant)  # fmt: skip
        return BundleContent(format=FORMAT, tenant=tenant, models=tuple(models), recipes=tuple(kept),
                             platform_models=tuple(sorted(n for n in shipped if model_owner(n) is None)))  # fmt: skip

    def _within_clusters(self, name: str, tenant: str) -> bool:
        """A platform model trained on a cluster's pool goes to its current members only, whatever was granted
        before a tenant left the cluster (:mod:`lineqa.training.cluster_models`)."""
        try:
            clusters = clusters_behind(self.repository, name)
        except ModelRepositoryError as exc:  # its lineage unreadable: whom it may reach is unknown, so nobody
            logger.warning("model %s left out of tenant %s's bundle: %s", name, tenant, exc)
            return False
        reason = outside_clusters(self.engine, clusters, name, tenant)
        if reason:
            logger.warning("left out of tenant %s's bundle: %s", tenant, reason)
        return reason is None

    def _model(self, name: str, pins: Iterable[tuple[str, int]]) -> BundleModel | None:
        try:
            on_line = self.repository.serving_version(name)
            held = {v.version: v for v in self.repository.versions(name)}
        except ModelRepositoryError:
            return None  # no complete version yet: nothing to ship
        wanted = sorted({on_line.version} | {v for n, v in pins if n == name and v in held})
        events = [e for e in self.repository.promotions(name).events() if e.action in PROMOTING]
        promotion = None
        if events:
            last = events[-1]
            promotion = Promotion(action=last.action, version=last.version, at=last.at, by=last.by, reason=last.reason)
        return BundleModel(
            name=name, on_line=on_line.version, promotion=promotion,
            settings=json.loads(self.repository.settings(name).to_json()),
            versions=tuple(BundleVersion(version=v, files=_version_files(held[v])) for v in wanted),
        )  # fmt: skip

    def current(self, tenant: str) -> StoredBundle:
        """The tenant's newest bundle, a new one signed and kept first when what it should run changed."""
        content = self.content(tenant)
        digest = content.digest()
        latest = self.latest(tenant)
        if latest is not None and latest.content_sha256 == digest:
            return latest
        number = (latest.number if latest else 0) + 1
        created = datetime.now(timezone.utc)
        manifest = Manifest(number=number, created_at=created.isoformat(), content=content).to_bytes()
        signature = sign(self.key, manifest)
        row = {"tenant_id": tenant, "number": number, "content_sha256": digest, "manifest": manifest,
               "signature": signature, "created_at": created}  # fmt: skip
        try:
            with tenant_scope(self.engine, tenant).begin() as conn:
                conn.execute(bundles.insert().values(**row))
        except IntegrityError:  # another plant's call stored this number first
            return self.current(tenant)
        logger.warning("bundle %s#%d: %s", tenant, number,
                       ", ".join(f"{m.name} v{m.on_line}" for m in content.models) or "no models")  # fmt: skip
        return StoredBundle(tenant, number, digest, manifest, signature)

    def latest(self, tenant: str) -> StoredBundle | None:
        b = bundles.c
        query = select(bundles).where(b.tenant_id == tenant).order_by(b.number.desc()).limit(1)
        return self._one(tenant, query)

    def stored(self, tenant: str, number: int) -> StoredBundle | None:
        b = bundles.c
        return self._one(tenant, select(bundles).where(b.tenant_id == tenant, b.number == number))

    def _one(self, tenant: str, query: Select[Any]) -> StoredBundle | None:
        with tenant_scope(self.engine, tenant).connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return StoredBundle(row["tenant_id"], int(row["number"]), row["content_sha256"], bytes(row["manifest"]),
                            bytes(row["signature"]))  # fmt: skip

    def file(self, tenant: str, number: int, model: str, version: int, path: str) -> tuple[Path, BundleFile]:
        """The file a bundle of ``tenant`` names, and what the bundle says of it; PlantAccessError for any
        other (another tenant's model, another bundle's version, a path that is not a version's file)."""
        manifest = self._manifest(tenant, number)
        for m in manifest.content.models if manifest else ():
            for v in m.versions if m.name == model else ():
                for f in v.files if v.version == version else ():
                    if f.path == path:
                        return self.repository.root / model / str(version) / path, f
        raise PlantAccessError(f"no file {model}/{version}/{path} in bundle {number}")

    def _manifest(self, tenant: str, number: int) -> Manifest | None:
        with self._lock:
            cached = self._manifests.get((tenant, number))
        if cached is None:
            stored = self.stored(tenant, number)
            if stored is None:
                return None
            cached = Manifest.from_bytes(stored.manifest)
            with self._lock:
                self._manifests[(tenant, number)] = cached
        return cached


def _parsed(version: RecipeVersion) -> Recipe | None:
    """The recipe of a stored version, or None (logged) for one that no longer parses."""
    try:
        return version.recipe()
    except RecipeError as exc:
        logger.warning("recipe %s/%s@%s cannot be read, left out of the bundle: %s", version.tenant,
                       version.recipe_id, version.number, exc)  # fmt: skip
        return None
