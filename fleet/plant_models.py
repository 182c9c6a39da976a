"""A plant following the models its tenant promotes on the hub.

Each bundle the hub offers is checked before anything of it is used: the Ed25519 signature over the manifest
with the hub key pinned when the plant joined (unsigned, or signed by any other key: refused); the manifest
itself (strictly parsed; this plant's tenant; only the tenant's own and granted platform models; a number
above the one installed, so an old bundle replayed is refused); every file's SHA-256 and size as it arrives.
A refused bundle is logged and noted in ``<home>/plant/refusals.jsonl``, and nothing of it is installed.

A bundle that checks out is installed the way a publish and a promotion are on the hub: each missing version
is written into the plant's model repository under the hub's version number and renamed into place
(:meth:`ModelRepository.install_version`), the platform models granted are granted here, the recipes are set
as audited versions (by ``hub:<who>``, with the hub's reason), and then the version on the line is promoted,
with the hub's who and why, in ``promotions.jsonl``. A running gateway's model supervisor sees the promotion
and switches the line to it with no failed frame. Until a bundle is installed whole, the line runs on what it
had; when the hub cannot be reached at all, it keeps running on the last bundle installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import grpc
from sqlalchemy import Engine, select

from lineqa.db import tenant_scope
from lineqa.fleet.downloads import FileWanted, fetch
from lineqa.fleet.errors import BundleRefusedError, FleetError, HubUnreachableError
from lineqa.fleet.files import file_sha256
from lineqa.fleet.manifest import BundleFile, BundleModel, Manifest
from lineqa.fleet.plant_link import PlantLink
from lineqa.fleet.signing import verify
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.serving.errors import ModelRepositoryError
from lineqa.serving.model_access import ModelGrants, may_use, model_owner
from lineqa.serving.model_repository import ModelRepository, ModelSettings
from lineqa.serving.promotions import event
from lineqa.serving.recipes import RecipeRef, RecipeStore
from lineqa.serving.schema import model_grants
from lineqa.vision.errors import RecipeError
from lineqa.vision.recipe import parse_recipe

logger = logging.getLogger(__name__)
HUB = "hub"  # who grants, on a plant, what the hub granted
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True)
class FollowOutcome:
    number: int  # the bundle installed after this call
    changed: bool  # this call installed it
    summary: str
    received_bytes: int = 0
    resumed: tuple[str, ...] = ()  # the files whose download went on from a cut one


def hub_error(exc: grpc.RpcError, what: str) -> FleetError:
    """A failed call to the hub as the plant acts on it: unreachable (keep going, try again), or refused."""
    if exc.code() in UNREACHABLE:
        return HubUnreachableError(f"{what}: the hub did not answer ({exc.code().name})")
    return FleetError(f"{what}: the hub refused ({exc.code().name}: {exc.details()})")


class ModelFollower:
    """Installs the bundles of one plant's tenant into its home (synchronous)."""

    def __init__(self, link: PlantLink, repository: ModelRepository, engine: Engine,
                 stub: pb_grpc.HubServiceStub, file_timeout_s: float = 600.0) -> None:  # fmt: skip
        self.link = link
        self.repository = repository
        self.engine = engine
        self.stub = stub
        self.file_timeout_s = file_timeout_s

    def installed_number(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return int(json.loads(self.link.installed.read_text())["number"])
        return 0

    def follow(self, wait_s: float = 0.0) -> FollowOutcome:
        """Ask for the tenant's bundle (waiting up to ``wait_s`` for a newer one) and install it when new.
        HubUnreachableError: nothing changed here; BundleRefusedError: refused, logged, nothing installed."""
        known = self.installed_number()
        request = pb.GetBundleRequest(known_number=known, wait_s=wait_s)
        try:
            signed = self.stub.GetBundle(request, timeout=wait_s + 30)
        except grpc.RpcError as exc:
            raise hub_error(exc, "asking for the bundle") from exc
        if signed.number == known:
            return FollowOutcome(known, False, f"bundle #{known} is current")
        return self.take(signed)

    def take(self, signed: pb.SignedBundle) -> FollowOutcome:
        """Check a bundle the hub sent and install it; a refusal is logged and noted before it is raised."""
        with self._lock():
            known = self.installed_number()
            try:
                return self._install(self.check(signed, known), signed)
            except BundleRefusedError as exc:
                self._refused(signed.number, str(exc), known)
                raise

    def check(self, signed: pb.SignedBundle, known: int) -> Manifest:
        """The manifest of ``signed``, once its signature, tenant and number are what this plant accepts."""
        verify(self.link.bundle_key, signed.manifest, signed.signature)
        manifest = Manifest.from_bytes(signed.manifest)
        if manifest.content.tenant != self.link.tenant:
            raise BundleRefusedError(f"the bundle is tenant {manifest.content.tenant!r}'s, this plant is "
                                     f"{self.link.tenant!r}'s")  # fmt: skip
        if manifest.number != signed.number or manifest.number <= known:
            raise BundleRefusedError(f"bundle #{manifest.number} is not newer than bundle #{known}, installed here "
                                     "(an old bundle sent again)")  # fmt: skip
        return manifest

    def _install(self, manifest: Manifest, signed: pb.SignedBundle) -> FollowOutcome:
        content = manifest.content
        settings = {m.name: self._settings(m) for m in content.models}
        for recipe in content.recipes:
            try:
                parse_recipe(recipe.yaml, f"{content.tenant}/{recipe.recipe_id}")
            except RecipeError as exc:
                raise BundleRefusedError(f"recipe {recipe.recipe_id} of the bundle cannot be used: {exc}") from exc
        missing = [(m, v) for m in content.models for v in m.versions if not self._holds(m.name, v.version, v.files)]
        fetched, received, resumed = {}, 0, []
        for model, version in missing:
            for file in version.files:
                wanted = FileWanted(manifest.number, model.name, version.version, file)
                got = fetch(self.stub, self.link.downloads, wanted, self.file_timeout_s)
                fetched[(model.name, version.version, file.path)] = got.path
                received += got.received_bytes
                if got.resumed_at and got.received_bytes:
                    resumed.append(str(wanted))
        for model, version in missing:
            files = {f.path: fetched[(model.name, version.version, f.path)] for f in version.files}
            try:
                self.repository.install_version(model.name, version.version, files, settings[model.name])
            except ModelRepositoryError as exc:
                raise BundleRefusedError(f"{model.name} v{version.version} cannot be installed here: {exc}") from exc
        self._grants(content.tenant, set(content.platform_models), manifest.number)
        self._recipes(manifest)
        moved = [self._promote(content.tenant, model, manifest.number) for model in content.models]
        self._record(signed)
        for path in fetched.values():
            path.unlink(missing_ok=True)
        lineup = ", ".join(f"{m.name} v{m.on_line}" for m in content.models) or "no models"
        summary = f"bundle #{manifest.number} installed: {lineup}; {len(content.recipes)} recipes"
        logger.warning("%s%s", summary, "".join(f"; {line}" for line in moved if line))
        return FollowOutcome(manifest.number, True, summary, received, tuple(resumed))

    @staticmethod
    def _settings(model: BundleModel) -> ModelSettings:
        try:
            return ModelSettings.from_json(json.dumps(model.settings))
        except (KeyError, TypeError, ValueError, ModelRepositoryError) as exc:
            raise BundleRefusedError(f"model {model.name}: settings {model.settings} cannot be used: {exc}") from exc

    def _holds(self, name: str, number: int, files: tuple[BundleFile, ...]) -> bool:
        """Whether this plant has the version already, file for file; a version of the same number that differs
        (a model made here under the hub's name) refuses the bundle."""
        folder = self.repository.root / name / str(number)
        if not folder.is_dir():
            return False
        for file in files:
            path = folder / file.path
            if not path.is_file() or file_sha256(path) != file.sha256:
                raise BundleRefusedError(f"{name} v{number} on this plant differs from the hub's: a model of the "
                                         "same name was made here; rename it or remove it")  # fmt: skip
        return True

    def _grants(self, tenant: str, granted: set[str], number: int) -> None:
        """Grant here the platform models the hub granted; take back those the hub granted here before and
        no longer grants (grants the plant's admin made are the admin's)."""
        grants = ModelGrants(self.engine)
        platform = {name for name in self.repository.model_names() if model_owner(name) is None} | granted
        for name in sorted(platform):
            g = model_grants.c
            newest = select(g.allowed, g.granted_by).where(g.tenant_id == tenant, g.model_name == name)
            with tenant_scope(self.engine, tenant).connect() as conn:
                last = conn.execute(newest.order_by(g.event_id.desc()).limit(1)).first()
                allowed = may_use(conn, tenant, name)
            if name in granted and not allowed:
                grants.change(tenant, name, allowed=True, by=HUB, reason=f"granted on the hub (bundle #{number})")
            elif name not in granted and allowed and last is not None and last.granted_by == HUB:
                grants.change(tenant, name, allowed=False, by=HUB, reason=f"no longer granted (bundle #{number})")

    def _recipes(self, manifest: Manifest) -> None:
        store = RecipeStore(self.engine)
        tenant = manifest.content.tenant
        for recipe in manifest.content.recipes:
            ref = RecipeRef(tenant, recipe.recipe_id)
            reason = f"{recipe.reason} (hub {ref}@{recipe.number}, bundle #{manifest.number})"
            store.set(ref, recipe.yaml, by=f"{HUB}:{recipe.set_by}", reason=reason)

    def _promote(self, tenant: str, model: BundleModel, number: int) -> str:
        log = self.repository.promotions(model.name)
        before = log.promoted()
        if before == model.on_line:
            return ""
        hub = model.promotion
        why = f"hub {hub.action} by {hub.by} at {hub.at}: {hub.reason}" if hub else "the hub's newest version"
        details = {"bundle": number, "tenant": tenant, "hub_action": hub.action if hub else None}
        log.append(event("promote", model.on_line, by=f"{HUB}:{hub.by if hub else 'publish'}",
                         reason=f"{why} (bundle #{number})", details=details))  # fmt: skip
        return f"{model.name}: v{model.on_line} on the line (was {f'v{before}' if before else 'none'})"

    def _record(self, signed: pb.SignedBundle) -> None:
        record = {"number": signed.number, "manifest": signed.manifest.decode(), "signature": signed.signature.hex(),
                  "installed_at": datetime.now(timezone.utc).isoformat()}  # fmt: skip
        staging = self.link.installed.with_name(".installed.json.new")
        staging.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(staging, self.link.installed)

    def _refused(self, number: int, reason: str, known: int) -> None:
        logger.error("refused bundle #%d from the hub: %s; the line keeps bundle #%d", number, reason, known)
        entry = {"at": datetime.now(timezone.utc).isoformat(), "bundle": number, "reason": reason}
        with (self.link.folder / "refusals.jsonl").open("a") as out:
            out.write(json.dumps(entry) + "\n")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One installer at a time per home (a scheduled ``plant sync`` and an on-demand ``--once``)."""
        with (self.link.folder / "install.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def installed_manifest(link: PlantLink) -> Manifest | None:
    """The manifest of the bundle installed last (``lineqa plant status``), or None."""
    path: Path = link.installed
    if not path.is_file():
        return None
    return Manifest.from_bytes(json.loads(path.read_text())["manifest"].encode())
