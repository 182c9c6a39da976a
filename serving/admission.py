"""Admission to the model server that follows its capacity: a bounded, adaptive number of calls in flight.

Frames the server cannot start on now wait here, in arrival order, instead of in Triton's queue: Triton's
deadline then measures Triton's own work, so a burst of frames is answered late rather than timed out
(RELIABILITY.md 2 and 13). How long a frame waited is its ``queue_ms``. The wait is bounded by the gateway's
limit of frames in flight; past that, streams are not read further (flow control) and unary calls are refused
with RESOURCE_EXHAUSTED.

How many calls may be in flight follows what the server manages: a machine whose cores are taken by other
work answers each call more slowly, and more calls at once would only queue inside Triton, where the deadline
runs. The limit is halved when a call takes more than half the deadline, and raised by one again after as
many calls in a row as the limit took less than a quarter of it, between one call and ``ceiling``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class InferenceSlots:
    """At most ``limit`` calls to the model server at once; the rest wait their turn, first come first served
    (a freed slot is handed to the longest waiter). For one event loop."""

    def __init__(self, ceiling: int, deadline_s: float) -> None:
        if ceiling < 1 or deadline_s <= 0:
            raise ValueError(f"need a concurrency of at least 1 and a positive deadline, got {ceiling}, {deadline_s}")
        self.ceiling = ceiling
        self.deadline_s = deadline_s
        self.limit = ceiling
        self.in_use = 0
        self._fast = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold one slot for the block (one call to the server); yields the seconds spent waiting for it."""
        queued = time.perf_counter()
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
        else:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(handed)
            try:
                await handed  # the slot is counted in ``in_use`` by whoever hands it over
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled():
                    self._release(None)  # handed a slot at the moment of being cancelled: pass it on
                else:
                    self._waiters.remove(handed)
                raise
        began = time.perf_counter()
        try:
            yield began - queued
        finally:
            self._release(time.perf_counter() - began)

    def _release(self, took_s: float | None) -> None:
        self.in_use -= 1
        if took_s is not None:
            self._adapt(took_s)
        while self._waiters and self.in_use < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)

    def _adapt(self, took_s: float) -> None:
        if took_s > self.deadline_s / 2:
            self.limit = max(1, self.limit // 2)
            self._fast = 0
        elif took_s < self.deadline_s / 4:
            self._fast += 1
            if self._fast >= self.limit:
                self.limit = min(self.ceiling, self.limit + 1)
                self._fast = 0
        else:
            self._fast = 0


def default_concurrency(instances: int, batch: int = 1) -> int:
    """The most calls in flight that keep every model instance busy: two batches per instance, one running
    and one ready to start when it ends. On a CPU a batch is one frame (batching gains little there and
    multiplies the latency); a GPU instance runs a full batch about as fast as a few frames."""
    return max(1, 2 * instances * max(1, batch))
