"""Keeps the embedded Triton serving what the repository says, without stopping the gateway.

Two duties, checked every ``period_s``:

- the Triton host process died: restart it on the same ports (RELIABILITY.md 3);
- the repository's versions on the line changed (``lineqa models promote`` or ``rollback``, or a first
  version published): start a second embedded Triton with the new versions on new ports, wait until it is
  ready, point the inspector's client and version choice at it, let the frames already sent to the old one
  finish (``grace_s``), then stop the old one. No frame waits for a model load, and none is judged by a
  version other than the one its result names.

A successor that fails to start (a broken model file) leaves the current server in place; it is tried again
only when the repository changes again.
"""

from __future__ import annotations

import asyncio
import logging

from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonError, served_versions
from lineqa.serving.inspector import Inspector

logger = logging.getLogger(__name__)


class EmbeddedSupervisor:
    def __init__(self, embedded: EmbeddedTriton, inspector: Inspector, *, grace_s: float | None = None) -> None:
        self.current = embedded
        self.inspector = inspector
        self.grace_s = inspector.triton.timeout_s + 1.0 if grace_s is None else grace_s
        self._refused: dict[str, int] | None = None
        inspector.served = embedded.served

    async def run(self, period_s: float = 1.0) -> None:
        """Supervise until cancelled."""
        while True:
            await asyncio.sleep(period_s)
            if not self.current.alive():
                logger.error("embedded Triton is not running: restarting it")
                try:
                    await asyncio.to_thread(self.current.restart)
                    self.inspector.served = self.current.served
                except EmbeddedTritonError:
                    logger.exception("embedded Triton did not restart; trying again")
                continue
            wanted = await asyncio.to_thread(served_versions, self.current.repository)
            if wanted != self.current.served and wanted != self._refused:
                await self.switch(wanted)

    async def switch(self, wanted: dict[str, int]) -> None:
        """Move to a new embedded Triton serving ``wanted`` (model name → version)."""
        logger.warning("model versions on the line change from %s to %s: starting them", self.current.served, wanted)
        successor = EmbeddedTriton(
            self.current.repository, ort_threads=self.current.ort_threads, start_timeout_s=self.current.start_timeout_s
        )
        try:
            await asyncio.to_thread(successor.start)
        except EmbeddedTritonError:
            logger.exception(
                "the new model versions %s could not be served; staying on %s", wanted, self.current.served
            )
            self._refused = wanted
            return
        self._refused = None
        old_client = self.inspector.triton.retarget(successor.endpoints.grpc_url)
        self.inspector.served = successor.served
        previous, self.current = self.current, successor
        logger.warning("now serving %s", successor.served)
        await asyncio.sleep(self.grace_s)
        if old_client is not None:
            await old_client.close()
        await asyncio.to_thread(previous.stop)

    def stop(self) -> None:
        self.current.stop()
