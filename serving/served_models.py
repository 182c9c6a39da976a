"""Which model versions the gateway judges with, chosen and held per frame so that no switch can fall between.

A :class:`Lineup` says, for every model, the version on the line and every version the server has loaded.
A frame takes a :meth:`ServedModels.lease` on its version (the recipe's pin, else the one on the line) for as
long as it is being judged: the version it is judged with is the version it was given, loaded on the server
from the lease's start to its end. A switch (promote, rollback, a recipe pinning another version) publishes a
new lineup, and a version it drops is unloaded only after its last lease has ended (:meth:`drained`).

The lineup is read from the repository off the event loop and cached until the supervisor refreshes it, so
judging a frame never touches the file system for it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from lineqa.serving.model_repository import ModelRepository, ModelSettings, ModelVersion
from lineqa.serving.triton_client import ModelUnavailableError


@dataclass(frozen=True)
class Lineup:
    """Per model, the version on the line and every version loaded (judging is possible only with those)."""

    on_line: Mapping[str, ModelVersion] = field(default_factory=dict)
    loaded: Mapping[tuple[str, int], ModelVersion] = field(default_factory=dict)
    settings: Mapping[str, ModelSettings] = field(default_factory=dict)
    in_repository: Mapping[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def read(cls, repository: ModelRepository, wanted: Mapping[str, Iterable[int]]) -> Lineup:
        """The lineup for ``wanted`` (model name → versions loaded), read from the repository (blocking)."""
        loaded = {(name, v): repository.version(name, v) for name, versions in wanted.items() for v in versions}
        on_line = {name: repository.serving_version(name) for name in wanted}
        settings = {name: repository.settings(name) for name in wanted}
        present = {name: frozenset(v.version for v in repository.versions(name)) for name in wanted}
        return cls(on_line, loaded, settings, present)

    def max_batch(self, name: str) -> int:
        """The largest batch the server takes for a model (1 for a model it does not batch)."""
        settings = self.settings.get(name)
        return settings.max_batch_size if settings is not None and settings.batching else 1

    def versions(self) -> dict[str, frozenset[int]]:
        """Model name → the versions loaded."""
        grouped: dict[str, set[int]] = {}
        for name, version in self.loaded:
            grouped.setdefault(name, set()).add(version)
        return {name: frozenset(versions) for name, versions in grouped.items()}


def wanted_versions(repository: ModelRepository, pinned: Collection[tuple[str, int]]) -> dict[str, set[int]]:
    """What the server must load (blocking): every ONNX model's version on the line, and every version a
    recipe pins (pins of versions not in the repository are left out: those frames get a clear error)."""
    wanted: dict[str, set[int]] = {}
    for name in repository.model_names():
        try:
            on_line = repository.serving_version(name)
        except Exception:  # a model folder with no complete version yet: nothing to serve
            continue
        if on_line.backend != "onnxruntime":
            continue
        versions = {v.version for v in repository.versions(name) if v.backend == "onnxruntime"}
        wanted[name] = {on_line.version} | {v for n, v in pinned if n == name and v in versions}
    return wanted


class ServedModels:
    """The current lineup, and the leases frames hold on its versions."""

    def __init__(self, lineup: Lineup | None = None) -> None:
        self.lineup = lineup or Lineup()
        self._leases: Counter[tuple[str, int]] = Counter()
        self._released = asyncio.Condition()

    def publish(self, lineup: Lineup) -> None:
        """From now on frames are given versions of ``lineup``; leases already taken stay valid."""
        self.lineup = lineup

    @asynccontextmanager
    async def lease(self, name: str, pinned: int | None) -> AsyncIterator[ModelVersion]:
        """The version a frame is judged with, loaded until the block ends. Raises ModelUnavailableError."""
        lineup = self.lineup
        if pinned is None:
            current = lineup.on_line.get(name)
            if current is None:
                raise ModelUnavailableError(f"model {name!r} is not served here")
            pinned = current.version
        version = lineup.loaded.get((name, pinned))
        if version is None:
            present = lineup.in_repository.get(name)
            if present is not None and pinned not in present:
                raise ModelUnavailableError(
                    f"model {name!r} has no version {pinned} in the repository (it has {sorted(present)})"
                )
            raise ModelUnavailableError(f"model {name!r} version {pinned} is not loaded (yet)")
        key = (name, pinned)
        self._leases[key] += 1
        try:
            yield version
        finally:
            self._leases[key] -= 1
            if not self._leases[key]:
                del self._leases[key]
            async with self._released:
                self._released.notify_all()

    def in_use(self, name: str, version: int) -> int:
        return self._leases[(name, version)]

    async def drained(self, versions: Iterable[tuple[str, int]]) -> None:
        """Wait until no frame holds a lease on any of ``versions`` (the lineup must no longer name them)."""
        keys = list(versions)
        async with self._released:
            await self._released.wait_for(lambda: not any(self._leases[k] for k in keys))
