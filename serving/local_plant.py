"""A ready single-machine plant for the demo, the benchmark and the tests: a CA (its key beside the home) and
a server certificate for localhost, one tenant with one line and its cameras, a token per camera, and the
tenant's recipes, in a lineqa home (a recipe naming a golden sample needs it in the home's reference store first).

It uses the same pieces as ``lineqa admin`` and ``lineqa recipes`` and can be run again on the same home: what
exists is kept, each run issues fresh tokens and sets the recipes given (a recipe whose content is unchanged
keeps its version). A recipe naming a platform model gets the tenant allowed to use it: on one machine the
plant's admin and the tenant are the same person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from sqlalchemy import Engine

from lineqa.serving.access import AccessStore
from lineqa.serving.database import database_url, open_database
from lineqa.serving.model_access import ModelGrants, model_owner
from lineqa.serving.pki import PlantPki
from lineqa.serving.recipes import RecipeRef, RecipeStore
from lineqa.serving.references import ReferenceStore, references_of
from lineqa.vision.recipe import parse_recipe

LOCAL_HOSTS = ["localhost", "127.0.0.1"]


@dataclass(frozen=True)
class LocalPlant:
    home: Path
    tenant: str
    line: str
    tokens: dict[str, str] = field(repr=False)  # camera id -> token

    @property
    def pki(self) -> PlantPki:
        return PlantPki(self.home / "pki")

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.pki.ca_cert.read_bytes())

    def call_metadata(self, camera: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[camera]}"),)

    def server_tls(self) -> tuple[bytes, bytes]:
        """(certificate, key) PEM for :class:`lineqa.serving.gateway.GatewaySettings`."""
        return self.pki.server_cert.read_bytes(), self.pki.server_key.read_bytes()


def provision_local_plant(
    home: Path, *, tenant: str = "demo", line: str = "line-1", cameras: tuple[str, ...] = ("cam-1",),
    db_url: str | None = None, recipes: Mapping[str, str] | None = None,
) -> LocalPlant:  # fmt: skip
    """Provision ``home``; ``recipes`` maps recipe ids to their YAML."""
    pki = PlantPki(home / "pki")
    if not pki.ca_cert.exists():
        pki.init(LOCAL_HOSTS)
    engine = open_database(database_url(home, db_url))
    try:
        store = AccessStore(engine)
        if tenant not in {t for t, _ in store.tenants()}:
            store.add_tenant(tenant)
        if line not in store.lines(tenant):
            store.add_line(tenant, line)
        for camera in sorted(set(cameras) - {c for _, _, c in store.cameras(tenant)}):
            store.add_camera(tenant, line, camera)
        tokens = {camera: store.issue_token(tenant, camera).token for camera in cameras}
        for recipe_id, text in (recipes or {}).items():
            set_recipe(engine, tenant, recipe_id, text, references=references_of(home))
    finally:
        engine.dispose()
    return LocalPlant(home, tenant, line, tokens)


def set_recipe(
    engine: Engine, tenant: str, recipe_id: str, text: str, reason: str = "single-machine plant",
    references: ReferenceStore | None = None,
) -> None:  # fmt: skip
    """Set a recipe of ``tenant`` (allowing it the platform model the recipe names, if it names one). Given the
    home's ``references``, a recipe naming a golden sample the tenant has not stored is refused, as by
    ``lineqa recipes set``."""
    model = parse_recipe(text, recipe_id).model.name
    grants = ModelGrants(engine)
    if model_owner(model) is None and not any(e.tenant == tenant for e in grants.history(model)):
        grants.change(tenant, model, allowed=True, by="lineqa local plant", reason=reason)
    RecipeStore(engine).set(
        RecipeRef(tenant, recipe_id), text, by="lineqa local plant", reason=reason, references=references
    )
