"""Fault injection for the reliability tests and the soak benchmark (RELIABILITY.md 21, 22).

- :class:`StandInTriton`: a loopback gRPC server speaking Triton's inference protocol (the one the gateway's
  client speaks to NVIDIA's Triton), serving one detection model, that can be told to answer, stall, answer
  with the wrong shape or with NaN, or refuse. A stand-in, because a real Triton cannot be made to do these on
  purpose; its good answers hold one confident detection, so every frame it judges is FAIL and a PASS
  anywhere means a fault was taken for a model result.
- :class:`tests.helpers.tcp_proxy.TcpProxy` (its own module): between camera agent and gateway; stalls or
  resets the connections.
- :func:`small_filesystem`: a size-limited file system (tmpfs) to put a lineqa home on, which can fill up.
- :class:`ChaosSchedule`: a seeded list of (time, fault) for a run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.grpc import service_pb2_grpc as triton_grpc


class TritonMode(str, Enum):
    ANSWER = "answer"
    STALL = "stall"  # no answer until the mode changes (the gateway's deadline must fire)
    WRONG_SHAPE = "wrong-shape"
    NAN = "nan"
    REFUSE = "refuse"  # UNAVAILABLE, as a Triton without the model


@dataclass
class StandInTriton(triton_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """One model, ``name`` v1: input ``images`` UINT8 [N, 3, size, size], output ``output0`` [N, 4 + classes,
    anchors], as a YOLO11 NMS-head export; every good answer holds one detection of class 0 at 0.9."""

    name: str = "metal"
    size: int = 320
    classes: int = 3
    mode: TritonMode = TritonMode.ANSWER
    answered: Counter[str] = field(default_factory=Counter)
    _server: grpc.Server | None = None
    port: int = 0
    _changed: threading.Event = field(default_factory=threading.Event)

    @property
    def anchors(self) -> int:
        return sum((self.size // stride) ** 2 for stride in (8, 16, 32))

    def start(self) -> StandInTriton:
        limits = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
        self._server = grpc.server(futures.ThreadPoolExecutor(16), options=limits)
        triton_grpc.add_GRPCInferenceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_mode(self, mode: TritonMode) -> None:
        self.mode = mode
        self._changed.set()
        self._changed = threading.Event()

    def stop(self) -> None:
        self.set_mode(TritonMode.REFUSE)
        if self._server is not None:
            self._server.stop(0)

    def ServerLive(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return triton_pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return triton_pb.ServerReadyResponse(ready=self.mode is not TritonMode.REFUSE)

    def ModelReady(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        return triton_pb.ModelReadyResponse(ready=self.mode is not TritonMode.REFUSE and request.name == self.name)

    def ModelMetadata(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        if self.mode is TritonMode.REFUSE or request.name != self.name:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"Request for unknown model: '{request.name}'")
        tensor = triton_pb.ModelMetadataResponse.TensorMetadata
        return triton_pb.ModelMetadataResponse(
            name=self.name,
            versions=["1"],
            platform="python",
            inputs=[tensor(name="images", datatype="UINT8", shape=[-1, 3, self.size, self.size])],
            outputs=[tensor(name="output0", datatype="FP32", shape=[-1, 4 + self.classes, self.anchors])],
        )

    def ModelInfer(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        mode = self.mode
        self.answered[mode.value] += 1
        if mode is TritonMode.STALL:
            self._changed.wait(30)
            context.abort(grpc.StatusCode.UNAVAILABLE, "stalled")
        if mode is TritonMode.REFUSE:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"Request for unknown model: '{request.model_name}'")
        batch = int(request.inputs[0].shape[0])
        rows = 4 + self.classes
        output = np.zeros((batch, rows, self.anchors), np.float32)
        output[:, :4, 0] = (100.0, 100.0, 40.0, 40.0)  # centre x, centre y, width, height in input pixels
        output[:, 4, 0] = 0.9
        if mode is TritonMode.NAN:
            output[:, 4, :] = np.nan
        if mode is TritonMode.WRONG_SHAPE:
            output = output[:, : rows - 1]
        contents = triton_pb.ModelInferResponse.InferOutputTensor(name="output0", datatype="FP32", shape=output.shape)
        return triton_pb.ModelInferResponse(
            model_name=self.name, model_version="1", outputs=[contents], raw_output_contents=[output.tobytes()]
        )


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``path`` for the block (needs root, as CI runs; a test that needs it
    fails elsewhere rather than skip: reliability tests must run)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Write a file that takes the file system's free space, but ``leave_bytes``; remove it to free it (it may
    not exist where the file system was full already: ``unlink(missing_ok=True)``)."""

    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize - leave_bytes
    filler = path / ".filler"
    try:
        out = filler.open("wb", buffering=0)  # unbuffered: closing never flushes a remainder into a full disk
    except OSError as exc:  # already full (another writer got there first): the fault is in place as it is
        if exc.errno != errno.ENOSPC:
            raise
        return filler
    block = b"\0" * (1 << 20)
    with out, contextlib.suppress(OSError):  # ENOSPC: full, as wanted
        while free > 0:
            free -= out.write(block[: min(len(block), free)]) or len(block)
    return filler


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str  # a TritonMode value, "proxy-reset", "proxy-stall", "disk-full", "disk-free"


def chaos_schedule(seed: int, duration_s: float, every_s: tuple[float, float] = (1.0, 3.0)) -> list[Fault]:
    """A seeded schedule of faults over ``duration_s``; Triton answers again, the disk has room and the proxy
    forwards by the end of it."""
    rng = random.Random(seed)
    kinds = [m.value for m in TritonMode if m is not TritonMode.ANSWER] + ["proxy-reset", "proxy-stall", "disk-full"]
    faults, at, disk_full = [], 0.0, False
    while True:
        at += rng.uniform(*every_s)
        if at >= duration_s:
            break
        kind = rng.choice(kinds + [TritonMode.ANSWER.value] * 3)
        if kind == "disk-full":
            kind = "disk-free" if disk_full else "disk-full"
            disk_full = not disk_full
        faults.append(Fault(round(at, 2), kind))
    faults.append(Fault(duration_s, TritonMode.ANSWER.value))
    if disk_full:
        faults.append(Fault(duration_s, "disk-free"))
    return faults


def wait_for(condition, timeout_s: float, every_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return bool(condition())
