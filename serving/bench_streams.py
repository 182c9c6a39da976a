"""The gateway under camera streams, for ``lineqa bench`` and the soak: N concurrent ``StreamInspect`` calls
of real JPEG frames, closed loop (the maximum rate) or open loop (latency at a given load), latency taken
client-side from send to result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

import grpc
import numpy as np

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.bench import BenchError, Measurement, Progress
from lineqa.serving.bench_cpu import CpuMeter
from lineqa.serving.bench_gateway import LINE_ID, RECIPE_ID, Connection

STALL_S = 60.0  # no result for this long on a stream: the gateway is stuck, the run is void
STAGES = (
    "decode_ms",
    "preprocess_ms",
    "queue_ms",
    "inference_ms",
    "postprocess_ms",
    "decision_ms",
    "persist_ms",
    "total_ms",
)


@dataclasses.dataclass(frozen=True)
class StreamPhase:
    """One phase of camera streams: what was sent and answered, latencies, throughput, CPU per process."""

    sent: int
    measurement: Measurement
    results: list[Any]  # pb.InspectionResult

    @classmethod
    def pooled(cls, parts: list[StreamPhase]) -> StreamPhase:
        measurement = Measurement.pooled([p.measurement for p in parts])
        return cls(sum(p.sent for p in parts), measurement, [r for p in parts for r in p.results])

    def report(self) -> dict[str, Any]:
        verdicts = Counter(pb.Verdict.Name(r.verdict).removeprefix("VERDICT_") for r in self.results)
        errors = Counter(pb.ErrorCode.Name(r.error.code) for r in self.results if r.verdict == pb.VERDICT_ERROR)
        stages = {name: float(np.median([getattr(r.timings, name) for r in self.results])) for name in STAGES}
        return {
            **self.measurement.report(),
            "sent": self.sent,
            "received": len(self.results),
            "verdicts": dict(verdicts),
            "errors": sum(errors.values()),
            "error_codes": dict(errors),
            "replays": sum(r.replay for r in self.results),
            "server_stage_ms_median": stages,
        }

    def problems(self, label: str) -> list[str]:
        """Why this phase measured something other than judging every frame once (empty: it did not)."""
        found = []
        errors = [r for r in self.results if r.verdict == pb.VERDICT_ERROR]
        if errors:
            found.append(f"{label}: {len(errors)} of {self.sent} frames got ERROR, e.g. {errors[0].error.message!r}")
        replays = sum(r.replay for r in self.results)
        if replays:
            found.append(f"{label}: {replays} frames were answered as replays (the records database was not fresh)")
        return found


class Cameras:
    """The streams' identities and per-camera sequence numbers, unique across all phases of a run."""

    def __init__(self, count: int) -> None:
        self.ids = [f"cam-{i}" for i in range(count)]
        self._next = dict.fromkeys(self.ids, 1)

    def frame(self, camera: str, jpeg: bytes) -> Any:  # pb.StreamInspectRequest
        sequence = self._next[camera]
        self._next[camera] += 1
        identity = pb.FrameIdentity(camera_id=camera, line_id=LINE_ID, part_id=f"{camera}-{sequence}",
                                    sequence=sequence)  # fmt: skip
        image = pb.Image(encoding=pb.IMAGE_ENCODING_JPEG, data=jpeg)
        return pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id=RECIPE_ID, image=image))


@dataclasses.dataclass(frozen=True)
class Pacing:
    """Closed loop (``window`` frames in flight per stream, for the maximum rate) or open loop (``rate``
    frames/s in total, spread evenly over the streams, for latency at a given load)."""

    window: int | None = None
    rate: float | None = None


async def _stream(
    stub: Any,
    connection: Connection,
    cameras: Cameras,
    index: int,
    jpegs: list[bytes],
    count: int,
    pacing: Pacing,
    start: float,
    progress: Progress,
) -> tuple[list[float], list[Any], float]:
    """One camera's stream: send ``count`` frames, return (latencies, results, time of the last result).

    In open loop a frame's latency counts from when it was due, not when it went out, so a client held back
    by the gateway's flow control is charged to the gateway (no coordinated omission).
    """
    camera = cameras.ids[index]
    streams = len(cameras.ids)
    call = stub.StreamInspect(metadata=connection.metadata(camera))
    sent_at: dict[int, float] = {}
    slots = asyncio.Semaphore(pacing.window) if pacing.window else None

    async def send() -> None:
        for k in range(count):
            request = cameras.frame(camera, jpegs[(index + k * streams) % len(jpegs)])
            if slots is not None:
                await slots.acquire()
                sent_at[request.frame.identity.sequence] = time.perf_counter()
            if pacing.rate is not None:
                due = start + (index + k * streams) / pacing.rate
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent_at[request.frame.identity.sequence] = due
            await call.write(request)
        await call.done_writing()

    sender = asyncio.create_task(send())
    latencies: list[float] = []
    results: list[Any] = []
    last = start
    try:
        for _ in range(count):
            response = await asyncio.wait_for(call.read(), STALL_S)
            last = time.perf_counter()
            if response is grpc.aio.EOF:
                raise BenchError(f"{camera}: the gateway ended the stream after {len(results)} of {count} results")
            result = response.result
            due = sent_at.pop(result.frame.sequence, None)
            if due is None:
                raise BenchError(f"{camera}: a result for sequence {result.frame.sequence}, never sent or repeated")
            latencies.append(last - due)
            results.append(result)
            if slots is not None:
                slots.release()
            progress.step()
        await sender
        if await call.read() is not grpc.aio.EOF:
            raise BenchError(f"{camera}: more results than frames sent")
    except asyncio.TimeoutError as exc:
        raise BenchError(f"{camera}: no result for {STALL_S:.0f} s; the gateway is stuck") from exc
    except grpc.aio.AioRpcError as exc:
        raise BenchError(f"{camera}: the stream failed: {exc.code().name} {exc.details()}") from exc
    finally:
        sender.cancel()
        call.cancel()
    return latencies, results, last


async def run_streams(
    connection: Connection,
    cameras: Cameras,
    jpegs: list[bytes],
    per_stream: int,
    pacing: Pacing,
    meter: CpuMeter,
    label: str,
) -> StreamPhase:
    """Every camera streams ``per_stream`` frames at once; throughput is answered frames over wall time."""
    progress = Progress(label, per_stream * len(cameras.ids))
    async with connection.channel() as channel:
        stub = pb_grpc.InspectionServiceStub(channel)  # type: ignore[no-untyped-call]
        cpu_before = meter.read()
        start = time.perf_counter() + (0.05 if pacing.rate else 0.0)  # let every open-loop stream be ready
        streams = [
            _stream(stub, connection, cameras, i, jpegs, per_stream, pacing, start, progress)
            for i in range(len(cameras.ids))
        ]
        done = await asyncio.gather(*streams)
        cpu = CpuMeter.spent(cpu_before, meter.read())
    latencies = [latency for stream_latencies, _, _ in done for latency in stream_latencies]
    results = [result for _, stream_results, _ in done for result in stream_results]
    seconds = max(last for _, _, last in done) - start
    return StreamPhase(per_stream * len(cameras.ids), Measurement(len(results), seconds, latencies, cpu), results)
