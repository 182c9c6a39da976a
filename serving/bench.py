"""Measurements behind ``lineqa bench``: the gateway end to end, and two baselines on the same images and model.

The gateway is measured as a camera sees it: a real ``lineqa serve`` process (embedded Triton, default image
policy, records committed before each verdict) driven by N concurrent ``StreamInspect`` calls of real JPEG
frames, latency taken client-side from send to result. Two baselines put its throughput in context, run in
this process while the gateway is idle, so that nothing competes with them:

- raw ONNX Runtime on tensors preprocessed beforehand (batch 1, one session with a thread per core): the
  ceiling, the model alone with no decoding, network, batching or records;
- Ultralytics' own ``predict`` loop on the ``.pt`` weights and the same files, torch with a thread per core:
  what a user would run instead.

Everything the bench needs to reach the gateway (address, transport security, per-camera tokens, the serve
options that go with them) comes from :func:`provision`, so that securing the gateway changes one function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import grpc
import numpy as np

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.embedded_triton import LOOPBACK, free_port
from lineqa.serving.errors import ServingError
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository, ModelSettings, ModelVersion
from lineqa.serving.onnx_model import OnnxModel
from lineqa.serving.readiness import NotServingError, wait_until_serving
from lineqa.vision.detector import preprocess
from lineqa.vision.image import ImageEncoding, decode_image
from lineqa.vision.letterbox import scale_input

MODEL_NAME = "bench"
RECIPE_ID = "bench"
LINE_ID = "line-1"
# The review band starts at Ultralytics' default predict confidence, so both see the same candidates.
RECIPE = "id: bench\nmodel: {name: bench}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.25}\n"
PROGRESS_EVERY_S = 5.0
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


class BenchError(ServingError):
    """The benchmark could not run, or a stream broke off (the gateway failed or stalled)."""


class UltralyticsMissingError(BenchError):
    """Exporting the weights and the Ultralytics baseline need the train extra."""


# --- reaching the gateway ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Connection:
    """How the bench reaches the gateway it starts, and the ``lineqa serve`` options that make it so."""

    target: str
    credentials: grpc.ChannelCredentials
    tokens: dict[str, str]
    serve_args: tuple[str, ...]

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self.target, self.credentials)

    def metadata(self, camera: str) -> tuple[tuple[str, str], ...]:
        """Call metadata for one camera's stream: its bearer token."""
        return (("authorization", f"Bearer {self.tokens[camera]}"),)


def provision(home: Path, cameras: list[str]) -> Connection:
    """Make ``home`` ready for ``cameras`` to connect and say how they do: as in production, TLS with the
    home's plant certificate and one token per camera (what a camera costs the gateway includes both)."""
    plant = provision_local_plant(
        home, tenant="bench", line=LINE_ID, cameras=tuple(cameras), recipes={RECIPE_ID: RECIPE}
    )
    port = free_port()
    return Connection(
        f"localhost:{port}", plant.channel_credentials(), plant.tokens, ("--host", LOOPBACK, "--port", str(port))
    )


def prepare_home(home: Path, onnx: Path, *, gpu: bool = False) -> ModelVersion:
    """A fresh lineqa home with the model as the only one served (on the GPU with ``gpu``: ONNX Runtime's CUDA
    provider in the embedded Triton); :func:`provision` sets the recipe using it.

    Fresh per run, so every (camera, sequence) is new to the records database and nothing is a replay.
    """
    settings = ModelSettings(gpu=True) if gpu else None
    return ModelRepository(home / "models").add_version(MODEL_NAME, onnx, settings=settings)


class GatewayProcess:
    """``lineqa serve`` in a child process; stopped like production stops it (SIGTERM), killed if it hangs.

    ``environment`` should be this process's environment from before Ultralytics was imported: importing it
    sets ``OMP_NUM_THREADS=1`` (and its own switches), which a production gateway would not inherit.
    """

    def __init__(self, home: Path, connection: Connection, log_path: Path, environment: dict[str, str]) -> None:
        self.home = home
        self.connection = connection
        self.log_path = log_path
        self.environment = environment
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError("the gateway is not running")
        return self._process.pid

    def __enter__(self) -> GatewayProcess:
        command = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(self.home), "--metrics-port", "0",
                   *self.connection.serve_args]  # fmt: skip
        with self.log_path.open("wb") as log:  # a file, not a pipe: nobody reads it while the gateway runs
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment)
        return self

    def __exit__(self, *_: object) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    async def wait_serving(self, timeout_s: float) -> None:
        """Until health says SERVING (Triton started, model loaded, database writable)."""
        try:
            await asyncio.to_thread(
                wait_until_serving,
                self.connection.target,
                self.connection.credentials,
                timeout_s,
                process=self._process,
            )
        except NotServingError as exc:
            raise BenchError(f"{exc}; its log ends:\n{self.log_tail()}") from None


# --- statistics ---------------------------------------------------------------------------------------------


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


def _cpu_times(pids: list[int]) -> float:
    """User + system CPU seconds of processes (all their threads), from /proc; vanished ones count 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (the gateway's Triton host, the Triton server, its Python backend stubs)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _machine_busy_s() -> float:
    """CPU seconds the machine's cores were busy, or taken by the hypervisor (steal), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent between two reads by this client, the gateway process, its Triton process tree, and
    everything else on the machine ("other").

    On a machine with few cores they all compete: this says which one the cores went to, and "other" well
    above zero says something outside the benchmark took them, so the figures are not the gateway's alone.
    Linux only (/proc): elsewhere it measures nothing.
    """

    def __init__(self, gateway_pid: int | None = None) -> None:
        self.gateway_pid = gateway_pid

    def read(self) -> dict[str, float]:
        if not Path("/proc/stat").exists():
            return {}
        spent = {"client": _cpu_times([os.getpid()])}
        if self.gateway_pid is not None:
            spent["gateway"] = _cpu_times([self.gateway_pid])
            spent["triton"] = _cpu_times(_descendants(self.gateway_pid))
        return {**spent, "machine": _machine_busy_s()}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        spent = {name: after[name] - before[name] for name in before}
        if "machine" in spent:
            machine = spent.pop("machine")
            spent["other"] = max(0.0, machine - sum(spent.values()))
        return spent


# --- baselines ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Loop:
    """A baseline, prepared once and timed in every round: ``call(k)`` handles the k-th frame, and ``threads``
    says how many compute threads it ended up with, where it chose them itself."""

    label: str
    call: Callable[[int], object]
    threads: Callable[[], int | None] = lambda: None

    def measure(self, frames: int, warmup: int, round_label: str) -> Measurement:
        for k in range(warmup):
            self.call(k)
        progress = Progress(f"{round_label}{self.label}", frames)
        latencies = []
        meter = CpuMeter()
        cpu_before = meter.read()
        start = time.perf_counter()
        for k in range(frames):
            began = time.perf_counter()
            self.call(warmup + k)
            latencies.append(time.perf_counter() - began)
            progress.step()
        seconds = time.perf_counter() - start
        return Measurement(frames, seconds, latencies, CpuMeter.spent(cpu_before, meter.read()), self.threads())


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def onnxruntime_loop(version: ModelVersion, jpegs: list[bytes], device: str = "cpu") -> Loop:
    """Raw ONNX Runtime, batch 1, on the served model file with the gateway's preprocessing done beforehand
    (the letterboxed tensors, scaled to float32): one session with an intra-op thread per usable core, on
    ``device`` (``cpu`` or ``cuda``)."""
    cores = usable_cores()
    model = OnnxModel(version.model_file, device=device, threads=cores)
    spec = version.metadata.spec(version.name, max_batch=1)
    tensors = [scale_input(preprocess([decode_image(data, ImageEncoding.JPEG)], spec)[0]) for data in jpegs]
    return Loop("raw ONNX Runtime", lambda k: model.infer(tensors[k % len(tensors)]), lambda: cores)


def load_ultralytics(config_dir: Path) -> ModuleType:
    """Ultralytics offline, its settings in ``config_dir``; a clear error where the train extra is missing."""
    if importlib.util.find_spec("ultralytics") is None:
        raise UltralyticsMissingError(
            "the bench exports the weights and runs Ultralytics' predict, which need the train extra: "
            "pip install 'lineqa[train]'"
        )
    from lineqa.training import ultralytics_adapter

    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    return ultralytics_adapter.load_ultralytics()


def export_onnx(weights: Path, imgsz: int, work: Path) -> Path:
    """Export a copy of the weights (Ultralytics writes the ONNX file beside them) with dynamic batch."""
    load_ultralytics(work / "ultralytics")
    from lineqa.training.ultralytics_adapter import export_onnx as ultralytics_export

    copy = work / "export" / weights.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(weights.read_bytes())
    return ultralytics_export(copy, imgsz)


def ultralytics_loop(weights: Path, paths: list[Path], imgsz: int, config_dir: Path, device: str = "cpu") -> Loop:
    """Ultralytics' own ``predict`` on the ``.pt`` weights, one image file per call, on ``device`` (``cpu``,
    or ``0`` for the first GPU), with torch using every usable core (left to itself, Ultralytics sets torch to
    one thread fewer than the cores)."""
    model = load_ultralytics(config_dir).YOLO(str(weights), task="detect")
    import torch  # present wherever Ultralytics is

    # Ultralytics sets torch's threads when it first picks the device (one fewer than the cores): one
    # warm-up call first, then every usable core, so the baseline is Ultralytics at its best on this machine.
    model.predict(str(paths[0]), imgsz=imgsz, device=device, verbose=False)
    torch.set_num_threads(usable_cores())

    def predict(k: int) -> object:
        return model.predict(str(paths[k % len(paths)]), imgsz=imgsz, device=device, verbose=False)

    return Loop("Ultralytics predict", predict, torch.get_num_threads)


# --- the gateway under camera streams -----------------------------------------------------------------------


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


def jpeg_files(folder: Path, pattern: str, limit: int) -> list[Path]:
    """The first ``limit`` matching JPEG files in name order: the same images for every measurement."""
    paths = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        raise BenchError(f"no JPEG files match {pattern!r} under {folder}")
    return paths[:limit]
