"""Timing shared by the camera's sources, triggers and outputs: a steady frame rate, and backoff between
attempts (reconnecting a stream or a broker, retrying a frame)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass


def check_rate(rate_fps: float | None) -> None:
    if rate_fps is not None and not rate_fps > 0:
        raise ValueError(f"rate_fps must be positive, got {rate_fps}")


class Pacer:
    """Spaces frames ``1/rate_fps`` apart on a fixed schedule, so a slow frame does not shift all later ones;
    a consumer that fell behind restarts the schedule instead of getting a burst. Waits on ``stop`` so that
    closing a source never waits out a tick."""

    def __init__(self, rate_fps: float | None, stop: threading.Event) -> None:
        check_rate(rate_fps)
        self._period = 1.0 / rate_fps if rate_fps else 0.0
        self._stop = stop
        self._next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next tick; False once ``stop`` is set (the caller should end)."""
        if self._period:
            now = time.monotonic()
            if self._next > now and self._stop.wait(self._next - now):
                return False
            self._next = max(self._next, now) + self._period
        return not self._stop.is_set()


@dataclass(frozen=True)
class Backoff:
    """How a live source waits between reconnect attempts: ``initial_s`` doubling (``factor``) up to
    ``max_s``, each delay scaled by a random factor in ``1 ± jitter`` so that the cameras of a line that lost
    the network together do not all reconnect in the same instant."""

    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid backoff {self}")

    def delay_s(self, attempt: int) -> float:
        """The (jittered) delay before attempt ``attempt`` + 1, counting the first retry as attempt 1."""
        delay = min(self.initial_s * self.factor ** min(max(attempt - 1, 0), 64), self.max_s)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    def delays(self) -> Iterator[float]:
        """The delay before each successive attempt, forever."""
        attempt = 1
        while True:
            yield self.delay_s(attempt)
            attempt += 1
