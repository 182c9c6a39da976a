"""Blocking calls to storage (the record database, the image store, camera tokens), each with a deadline, on
a thread pool of their own.

A hung PostgreSQL, a stalled disk or a network file system that stops answering then costs each frame one
deadline (an ERROR result with STORAGE_FAILURE, to be sent again later) instead of stalling every frame:
the image decoding and preprocessing run on the event loop's default pool, which storage never takes.
A call that overruns its deadline keeps its thread until storage answers; the pool is bounded, and calls
queued behind hung ones time out too and are dropped before they run (RELIABILITY.md 2).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from lineqa.serving.database import DatabaseError

P = ParamSpec("P")
T = TypeVar("T")


class StorageTimeoutError(DatabaseError):
    """A storage call did not finish within its deadline."""


class StorageCalls:
    def __init__(self, timeout_s: float = 2.0, threads: int = 8) -> None:
        if timeout_s <= 0:
            raise ValueError(f"the storage deadline must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="lineqa-storage")

    async def run(self, what: str, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` on the storage pool; StorageTimeoutError naming ``what`` past the deadline."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, functools.partial(call, *args, **kwargs))
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except asyncio.TimeoutError:
            raise StorageTimeoutError(f"{what} did not finish within {self.timeout_s:g} s") from None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
