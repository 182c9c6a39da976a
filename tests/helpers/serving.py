"""The embedded Triton, the served lineup and a running gateway, set up for tests that drive an Inspector directly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from lineqa.serving.access import AccessStore, TokenCache
from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonSettings
from lineqa.serving.gateway import Gateway, GatewaySettings, create_server
from lineqa.serving.inspector import Inspector
from lineqa.serving.local_plant import LocalPlant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.recipes import RecipeBook
from lineqa.serving.served_models import Lineup, ServedModels, wanted_versions


def lineup_of(repository: ModelRepository, recipes: RecipeBook | None = None) -> ServedModels:
    """What the model supervisor would publish for ``repository`` (and the versions ``recipes`` pin)."""
    pinned = recipes.pinned_models() if recipes else set()
    return ServedModels(Lineup.read(repository, wanted_versions(repository, pinned)))


@contextmanager
def embedded_triton(repository: ModelRepository, recipes: RecipeBook | None = None) -> Iterator[EmbeddedTriton]:
    """The embedded Triton with the repository's versions on the line (and pinned ones) loaded; one ONNX
    Runtime thread per instance, so tests leave the other core to the gateway."""
    triton = EmbeddedTriton(repository, EmbeddedTritonSettings(ort_threads=1))
    triton.start(wanted_versions(repository, recipes.pinned_models() if recipes else set()))
    try:
        yield triton
    finally:
        triton.stop()


@asynccontextmanager
async def running_gateway(inspector: Inspector, plant: LocalPlant, **settings: Any) -> AsyncIterator[Gateway]:
    """A started gateway for ``inspector`` with ``plant``'s TLS and camera tokens (``settings`` for
    :class:`GatewaySettings`); afterwards stopped, and the inspector's Triton client and storage pool closed."""
    cert, key = plant.server_tls()
    gateway = create_server(
        inspector,
        GatewaySettings(port=0, tls_cert=cert, tls_key=key, **settings),
        TokenCache(AccessStore(inspector.store.engine)),
    )
    await gateway.server.start()
    try:
        yield gateway
    finally:
        await gateway.server.stop(0)
        await inspector.triton.close()
        inspector.storage.close()
