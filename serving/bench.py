"""Measurements behind ``lineqa bench``: the gateway end to end, and two baselines on the same images and model.

The gateway is measured as a camera sees it: a real ``lineqa serve`` process (embedded Triton, default image
policy, records committed before each verdict) driven by N concurrent ``StreamInspect`` calls of real JPEG
frames, latency taken client-side from send to result. Two baselines put its throughput in context, run in
this process while the gateway is idle, so that nothing competes with them:

- raw ONNX Runtime on tensors preprocessed beforehand (batch 1, one session with a thread per core): the
  ceiling, the model alone with no decoding, network, batching or records;
- Ultralytics' own ``predict`` loop on the ``.pt`` weights and the same files, torch with a thread per core:
  what a user would run instead.

This module holds what every measurement shares: the bench's error, the images, a measurement's figures and
its progress line. The rest is one module per concern: :mod:`~lineqa.serving.bench_gateway` (the home and the
``lineqa serve`` process, and how cameras reach it), :mod:`~lineqa.serving.bench_cpu` (where the CPU went),
:mod:`~lineqa.serving.bench_baselines` (the two baselines and the ONNX export) and
:mod:`~lineqa.serving.bench_streams` (the gateway under camera streams).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from lineqa.serving.errors import ServingError

PROGRESS_EVERY_S = 5.0


class BenchError(ServingError):
    """The benchmark could not run, or a stream broke off (the gateway failed or stalled)."""


def jpeg_files(folder: Path, pattern: str, limit: int) -> list[Path]:
    """The first ``limit`` matching JPEG files in name order: the same images for every measurement."""
    paths = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        raise BenchError(f"no JPEG files match {pattern!r} under {folder}")
    return paths[:limit]


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measured loop or phase: how many frames, how long, each frame's latency, CPU spent per process, and
    the compute threads the measured code chose where it chose itself (Ultralytics: cores - 1)."""

    frames: int
    seconds: float
    latencies_s: list[float]
    cpu_s: dict[str, float] = dataclasses.field(default_factory=dict)
    threads: int | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @classmethod
    def pooled(cls, parts: list[Measurement]) -> Measurement:
        """Rounds of the same measurement as one: frames, seconds and CPU add up, latencies pool."""
        cpu: Counter[str] = Counter()
        for part in parts:
            cpu.update(part.cpu_s)
        latencies = [latency for part in parts for latency in part.latencies_s]
        return cls(sum(p.frames for p in parts), sum(p.seconds for p in parts), latencies, dict(cpu), parts[0].threads)

    def latency_ms(self) -> dict[str, float]:
        p50, p95, p99 = np.percentile(np.asarray(self.latencies_s) * 1e3, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": max(self.latencies_s) * 1e3}

    def report(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "seconds": self.seconds,
            "fps": self.fps,
            "latency_ms": self.latency_ms(),
            "cpu_ms_per_frame": {name: s * 1e3 / self.frames for name, s in self.cpu_s.items()},
            **({"threads": self.threads} if self.threads is not None else {}),
        }


class Progress:
    """A line on standard error every few seconds of a long loop, so a slow run is visibly alive."""

    def __init__(self, label: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.done = 0
        self.start = self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            rate = self.done / (now - self.start)
            print(f"bench: {self.label}: {self.done}/{self.total} frames, {rate:.1f} frames/s", file=self.stream)
