"""A hub and its plants for tests: two homes on loopback, the hub's service in a thread of the test process (or
``lineqa hub serve`` as a process of its own), plants joined with real enrolment files, the shipped demo detector
as the model (a real ONNX file of 10.9 MB: enough bytes for a transfer to be cut in the middle)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine

from lineqa.content_store import ContentStore
from lineqa.demo import SHIPPED_MODEL
from lineqa.fleet.bundles import HubBundles
from lineqa.fleet.database import open_fleet_database
from lineqa.fleet.enrolment import bundle_key_path, enrol
from lineqa.fleet.errors import HubUnreachableError
from lineqa.fleet.hub_ingest import HubIngest
from lineqa.fleet.hub_service import HubServer, HubSettings, create_hub_server
from lineqa.fleet.plant_link import ChannelSettings, PlantLink, join
from lineqa.fleet.plant_sync import PlantSync, SyncSettings
from lineqa.fleet.plants import PlantRegistry
from lineqa.fleet.policy import DataPolicy, PolicyStore
from lineqa.fleet.signing import signing_key
from lineqa.serving.access import AccessStore
from lineqa.serving.database import database_url
from lineqa.serving.local_plant import LOCAL_HOSTS, set_recipe
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.pki import PlantPki
from lineqa.serving.promotions import event
from tests.conftest import app_role_url

T = TypeVar("T")
MODEL = SHIPPED_MODEL
TENANTS = ("acme", "globex")
FAST_LINK = ChannelSettings(keepalive_s=1.0, keepalive_timeout_s=1.0)


@dataclass
class HubHome:
    """The hub's home; ``engine`` is the owner's (the hub admin's commands), ``service`` what ``hub serve``
    logs in as (on PostgreSQL the application role, under row-level security)."""

    home: Path
    engine: Engine
    service: Engine

    @property
    def repository(self) -> ModelRepository:
        return ModelRepository(self.home / "models")

    def publish(self, model: str, *, promote: bool = True, reason: str = "test release") -> int:
        """A new version of ``model`` (the demo detector), promoted unless told not to; its number."""
        version = self.repository.add_version(model, MODEL).version
        if promote:
            self.repository.promotions(model).append(event("promote", version, by="ml-lead", reason=reason))
        return version

    def recipe(self, tenant: str, recipe_id: str, model: str) -> None:
        set_recipe(self.engine, tenant, recipe_id, f"id: {recipe_id}\nmodel: {{name: {model}}}\n", reason="release")

    def policy(self, tenant: str, policy: DataPolicy) -> DataPolicy:
        return PolicyStore(self.engine).set(tenant, policy, by="tenant-admin", reason="test")

    def settings(self, port: int = 0, **extra: float) -> HubSettings:
        pki = PlantPki(self.home / "pki")
        return HubSettings(port=port, tls_cert=pki.server_cert.read_bytes(), tls_key=pki.server_key.read_bytes(),
                           client_ca=pki.ca_cert.read_bytes(), **extra)  # type: ignore[arg-type]  # fmt: skip

    def server(self, settings: HubSettings) -> HubServer:
        policies = PolicyStore(self.service)
        bundles = HubBundles(self.service, self.repository, signing_key(bundle_key_path(self.home)))
        ingest = HubIngest(self.service, ContentStore(self.home / "images"), policies)
        return create_hub_server(PlantRegistry(self.service), bundles, ingest, policies, settings)


def make_hub(tmp_path: Path, tenants: tuple[str, ...] = TENANTS, db_url: str | None = None) -> HubHome:
    """A hub home on SQLite, or on the PostgreSQL database ``db_url`` (the owner's login; the service then
    logs in as the application role)."""
    home = tmp_path / "hub"
    PlantPki(home / "pki").init(LOCAL_HOSTS, name="lineqa hub CA")
    engine = open_fleet_database(database_url(home, db_url))
    for tenant in tenants:
        AccessStore(engine).add_tenant(tenant)
    service = open_fleet_database(app_role_url(db_url)) if db_url else engine
    return HubHome(home, engine, service)


def make_plant(hub: HubHome, home: Path, plant: str, tenant: str, address: str) -> PlantLink:
    """A plant home joined to ``hub`` with a real enrolment (the hub's CA issues its certificate)."""
    enrolment = enrol(hub.home, hub.engine, plant, tenant, address, by="hub-admin")
    engine = open_fleet_database(database_url(home))
    try:
        return join(home, enrolment, engine)
    finally:
        engine.dispose()


def plant_sync(home: Path, hub: str | None = None, **extra: object) -> PlantSync:
    return PlantSync(home, SyncSettings(channel=FAST_LINK, hub=hub, **extra))  # type: ignore[arg-type]


class HubThread:
    """The hub's service on its own event loop in a thread of the test process; ``stop`` ends it (a hub that
    goes away), a new one can start on the same port."""

    def __init__(self, hub: HubHome, port: int = 0, **settings: float) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: HubServer | None = None
        self._watching: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, args=(hub, hub.settings(port, **settings)), daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._server is None:
            raise RuntimeError("the hub did not start")
        self.port: int = self._server.port

    def _run(self, hub: HubHome, settings: HubSettings) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self._server = hub.server(settings)
            await self._server.server.start()
            self._watching = asyncio.create_task(self._server.watch.run())
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def stop(self) -> None:
        async def stop() -> None:
            if self._watching is not None:
                self._watching.cancel()
            if self._server is not None:
                await self._server.server.stop(0)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)


@contextmanager
def hub_running(hub: HubHome, port: int = 0, **settings: float) -> Iterator[HubThread]:
    thread = HubThread(hub, port, **settings)
    try:
        yield thread
    finally:
        thread.stop()


def retried(round_once: Callable[[], T], within_s: float = 20) -> T:
    """What the sync loops do after a cut: try again until the hub answers (the channel reconnects)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return round_once()
        except HubUnreachableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
