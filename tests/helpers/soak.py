"""Soak (RELIABILITY.md 21): N camera streams at a fraction of the gateway's measured capacity for a bounded
time, with the gateway's memory, file descriptors and threads sampled every second after a warm-up.

Used by the suite's short soak (``tests/serving/test_soak.py``) and by the long one, ``benchmarks/soak.py``;
it drives a real ``lineqa serve`` (embedded Triton, TLS, tokens, records) with the benchmark's streams
(:mod:`lineqa.serving.bench_streams`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from lineqa.serving.bench_cpu import CpuMeter
from lineqa.serving.bench_gateway import GatewayProcess, prepare_home, provision
from lineqa.serving.bench_streams import Cameras, Pacing, run_streams

MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Sample:
    at_s: float
    gateway_rss_mb: float
    triton_rss_mb: float
    fds: int
    threads: int


@dataclasses.dataclass(frozen=True)
class SoakReport:
    streams: int
    capacity_fps: float
    rate_fps: float
    seconds: float
    frames: int
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    samples: list[Sample]

    def _edge(self, field: str, first: bool) -> float:
        """Median of the first (or last) fifth of the samples: steadier than one sample."""
        values = [getattr(s, field) for s in self.samples]
        fifth = max(1, len(values) // 5)
        return float(np.median(values[:fifth] if first else values[-fifth:]))

    def growth(self, field: str) -> float:
        return self._edge(field, first=False) - self._edge(field, first=True)

    def summary(self) -> str:
        return (
            f"{self.streams} streams at {self.rate_fps:.1f} frames/s ({self.rate_fps / self.capacity_fps:.0%} of "
            f"{self.capacity_fps:.1f}) for {self.seconds:.0f} s: {self.frames} frames, errors {self.errors}, "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms; after warm-up the gateway's memory grew "
            f"{self.growth('gateway_rss_mb'):+.1f} MB (Triton's {self.growth('triton_rss_mb'):+.1f} MB), "
            f"file descriptors {self._edge('fds', True):.0f} -> {self._edge('fds', False):.0f}, threads "
            f"{self._edge('threads', True):.0f} -> {self._edge('threads', False):.0f}"
        )


class Sampler:
    """Every ``period_s``, the gateway process's resident memory, open files and threads, and its process
    tree's (Triton and its stubs) resident memory."""

    def __init__(self, pid: int, period_s: float = 1.0) -> None:
        self.process = psutil.Process(pid)
        self.period_s = period_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            with self.process.oneshot():
                rss, fds, threads = self.process.memory_info().rss, self.process.num_fds(), self.process.num_threads()
            triton = 0
            for child in self.process.children(recursive=True):
                try:
                    triton += child.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.samples.append(Sample(time.monotonic() - self._began, rss / MB, triton / MB, fds, threads))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def soak(
    work: Path, onnx: Path, jpegs: list[bytes], *, streams: int, warmup_s: float, duration_s: float, load: float = 0.8
) -> SoakReport:
    """Measure the gateway's capacity (closed loop, 2 frames in flight per stream), then stream at ``load`` of
    it: ``warmup_s`` unmeasured, then ``duration_s`` with resources sampled every second."""
    home = work / "home"
    prepare_home(home, onnx)
    cameras = Cameras(streams)
    connection = provision(home, cameras.ids)

    async def run(gateway: GatewayProcess) -> SoakReport:
        await gateway.wait_serving(180)
        meter = CpuMeter(gateway.pid)
        peak = await run_streams(connection, cameras, jpegs, 12, Pacing(window=2), meter, "soak: capacity")
        capacity = peak.measurement.fps
        rate = load * capacity
        await run_streams(connection, cameras, jpegs, max(1, int(rate * warmup_s / streams)), Pacing(rate=rate), meter,
                          "soak: warm-up")  # fmt: skip
        with Sampler(gateway.pid) as sampler:
            phase = await run_streams(connection, cameras, jpegs, max(1, int(rate * duration_s / streams)),
                                      Pacing(rate=rate), meter, "soak")  # fmt: skip
        errors: dict[str, int] = {}
        for result in phase.results:
            if result.error.code:
                errors[str(result.error.code)] = errors.get(str(result.error.code), 0) + 1
        latency = phase.measurement.latency_ms()
        return SoakReport(streams, capacity, rate, phase.measurement.seconds, len(phase.results), errors,
                          latency["p50"], latency["p99"], sampler.samples)  # fmt: skip

    with GatewayProcess(home, connection, work / "serve.log", dict(os.environ)) as gateway:
        report = asyncio.run(run(gateway))
    print(f"soak: {report.summary()}", file=sys.stderr)
    return report
