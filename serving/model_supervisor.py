"""Keeps what the gateway judges with in step with the model repository and the recipes, without a restart.

Checked every ``period_s``, off the event loop:

- with the embedded server, the server died: restart it and load again what it served (RELIABILITY.md 3);
- the versions to serve changed (``lineqa models publish`` of a first version, ``promote``, ``rollback``, a
  recipe pinning a version): with the embedded server, Triton loads the new versions beside the old ones, the
  gateway's lineup switches to them, frames still judged with an old version finish, and only then does
  Triton unload it (:mod:`lineqa.serving.served_models`). A version Triton cannot load (a broken file) leaves
  the line as it was, logged, and is tried again only when the repository changes again. NVIDIA's Triton
  serves what its own version policy names; the gateway's lineup follows the repository.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonError
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.recipes import RecipeBook
from lineqa.serving.served_models import Lineup, ServedModels, wanted_versions
from lineqa.serving.triton_client import TritonClient

logger = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 60.0


def _frozen(wanted: Mapping[str, set[int]]) -> dict[str, frozenset[int]]:
    return {name: frozenset(versions) for name, versions in wanted.items()}


class ModelSupervisor:
    def __init__(
        self,
        repository: ModelRepository,
        recipes: RecipeBook,
        served: ServedModels,
        client: TritonClient,
        embedded: EmbeddedTriton | None = None,
    ) -> None:
        self.repository = repository
        self.recipes = recipes
        self.served = served
        self.client = client
        self.embedded = embedded
        self._refused: dict[str, frozenset[int]] | None = None

    def _wanted(self) -> dict[str, frozenset[int]]:
        if self.embedded is None:  # NVIDIA's Triton loads what its version policy names: every version
            return {name: frozenset(v.version for v in self.repository.versions(name))
                    for name in wanted_versions(self.repository, ())}  # fmt: skip
        return _frozen(wanted_versions(self.repository, self.recipes.pinned_models()))

    def prepare(self) -> None:
        """Load (embedded) and publish the first lineup; blocking, before the gateway takes frames."""
        wanted = self._wanted()
        if self.embedded is not None:
            self.embedded.load(wanted)
        self.served.publish(Lineup.read(self.repository, wanted))

    async def run(self, period_s: float = 1.0) -> None:
        """Supervise until cancelled; a failed round is logged and tried again."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await self.check()
            except Exception:
                logger.exception("model supervision round failed; trying again")

    async def check(self) -> None:
        """One round: restart a dead embedded server, or switch to the versions now wanted."""
        if self.embedded is not None and not self.embedded.alive():
            logger.error("the embedded Triton is not running: restarting it\n%s", self.embedded.log_tail())
            try:
                endpoints = await asyncio.to_thread(self.embedded.restart)
            except EmbeddedTritonError:
                logger.exception("the embedded Triton did not restart; trying again")
                return
            if endpoints.grpc_url != self.client.url:
                await self.client.retarget(endpoints.grpc_url)
            return
        wanted = await asyncio.to_thread(self._wanted)
        current = self.served.lineup
        on_line = await asyncio.to_thread(lambda: {n: self.repository.serving_version(n).version for n in wanted})
        if wanted == current.versions() and on_line == {n: v.version for n, v in current.on_line.items()}:
            return
        if wanted == self._refused:
            return
        await self.switch(wanted)

    async def switch(self, wanted: dict[str, frozenset[int]]) -> None:
        """Serve ``wanted``: load it beside what is served, publish it, let the frames on versions it drops
        finish, then unload those."""
        before = self.served.lineup
        logger.warning("versions to serve change from %s to %s", before.versions(), wanted)
        if self.embedded is not None:
            loaded = before.versions()
            both = {name: versions | loaded.get(name, frozenset()) for name, versions in wanted.items()}
            try:
                await asyncio.to_thread(self.embedded.load, both)
            except EmbeddedTritonError:
                logger.exception("cannot serve %s; staying on %s", wanted, loaded)
                self._refused = wanted
                return
        self._refused = None
        self.served.publish(await asyncio.to_thread(Lineup.read, self.repository, wanted))
        dropped = [key for key in before.loaded if key[1] not in wanted.get(key[0], frozenset())]
        try:
            await asyncio.wait_for(self.served.drained(dropped), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            logger.warning("frames still hold %s after %.0f s: unloading them anyway", dropped, DRAIN_TIMEOUT_S)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.load, wanted)
        logger.warning("now serving %s", {n: v.version for n, v in self.served.lineup.on_line.items()})
