"""The embedded Triton and the served lineup, set up for tests that drive an Inspector directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonSettings
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
