"""The camera agent's core: captures go through the spool to one ``StreamInspect`` call per camera, and
verdicts come back out to the sinks, in capture order, exactly once each.

The stream keeps up to ``window`` frames in flight. Results may come back in any order (the gateway judges
frames of a stream concurrently); they are handed on in sequence order, so a PLC and the JSON-lines file see
parts in the order the line made them. A frame leaves the spool only after its verdict was handed on. When
the stream breaks (gateway restart, network), the agent reconnects with backoff and sends again every frame
still in the spool, oldest first; the gateway answers any it had already judged with the original verdict.
A refused token or camera (UNAUTHENTICATED, PERMISSION_DENIED) stops the agent: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.camera.model import AgentStatus, Context, FrameSource, VerdictSink
from lineqa.serving.camera.sinks import verdict_label
from lineqa.serving.camera.spool import Spool, SpooledFrame
from lineqa.serving.errors import ServingError

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT}


class AgentError(ServingError):
    """The gateway refuses this camera (token, camera or line): a configuration problem, not an outage."""


@dataclass(frozen=True)
class GatewayTarget:
    address: str
    credentials: grpc.ChannelCredentials | None  # None: plaintext, only when asked for explicitly
    token: str

    def channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.address)
        return grpc.aio.secure_channel(self.address, self.credentials)


def _request(context: Context, recipe_id: str, frame: SpooledFrame) -> pb.StreamInspectRequest:
    capture = frame.capture
    captured = Timestamp()
    captured.FromDatetime(capture.captured_at)
    identity = pb.FrameIdentity(
        camera_id=context.camera,
        line_id=context.line,
        part_id=capture.part_id,
        sequence=frame.sequence,
        capture_time=captured,
    )
    image = pb.Image(encoding=capture.encoding, data=capture.data, width=capture.width, height=capture.height)  # type: ignore[arg-type]
    return pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id=recipe_id, image=image))


class CameraAgent:
    def __init__(
        self,
        target: GatewayTarget,
        context: Context,
        recipe_id: str,
        spool: Spool,
        sink: VerdictSink,
        *,
        window: int = 8,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.target = target
        self.context = context
        self.recipe_id = recipe_id
        self.spool = spool
        self.sink = sink
        self.window = window
        self.max_backoff_s = max_backoff_s
        self.status = AgentStatus(state="connecting")
        self._latencies: deque[float] = deque(maxlen=200)
        self._judged_times: deque[float] = deque(maxlen=50)
        self._reported_at = 0.0
        self._new_frame = asyncio.Event()
        self._source_done = asyncio.Event()

    # -- capture ------------------------------------------------------------------------------------------

    def _capture(self, source: FrameSource, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """Worker thread: every capture into the spool (which may block the source when full)."""
        try:
            for capture in source.captures():
                if stop.is_set():
                    break
                self.spool.append(capture)
                loop.call_soon_threadsafe(self._new_frame.set)
        finally:
            loop.call_soon_threadsafe(self._source_done.set)

    # -- the stream ---------------------------------------------------------------------------------------

    async def run(self, source: FrameSource | None, stop: asyncio.Event) -> AgentStatus:
        """Capture from ``source`` and stream until the source ends and the spool is empty, or ``stop``."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        capture = None
        if source is None:
            self._source_done.set()
        else:
            capture = asyncio.create_task(asyncio.to_thread(self._capture, source, loop, halt))
        streaming = asyncio.create_task(self._stream_until_done())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([streaming, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            if source is not None:
                source.close()
            for task in (streaming, stopped):
                task.cancel()
            if capture is not None:
                await asyncio.gather(capture, return_exceptions=True)
        if streaming.done() and not streaming.cancelled() and streaming.exception():
            raise streaming.exception()  # type: ignore[misc]
        self.status.state = "stopped"
        self.status.spooled = len(self.spool)
        self.sink.status(self.status)
        return self.status

    async def _stream_until_done(self) -> None:
        failures = 0
        while True:
            try:
                finished = await self._session()
                failures = 0
                if finished:
                    return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL:
                    raise AgentError(f"the gateway refused camera {self.context.camera}: {exc.details()}") from None
                failures += 1
                logger.warning("gateway %s unreachable (%s): spooling", self.target.address, exc.code().name)
            self.status.state = "spooling"
            self.status.spooled = len(self.spool)
            self.sink.status(self.status)
            await asyncio.sleep(min(self.max_backoff_s, 0.2 * 2**failures) * random.uniform(0.8, 1.2))

    async def _session(self) -> bool:
        """One StreamInspect call; True when the source has ended and every frame was judged."""
        in_flight: OrderedDict[int, float] = OrderedDict()  # sequence -> send time, in send order
        results: dict[int, pb.InspectionResult] = {}
        slots = asyncio.Semaphore(self.window)
        metadata = (("authorization", f"Bearer {self.target.token}"),)

        async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
            last = -1
            while True:
                await slots.acquire()
                frames = await asyncio.to_thread(self.spool.pending, last, 1)
                while not frames:
                    if self._source_done.is_set():
                        return  # half-close: the gateway answers what is in flight, then ends the call
                    self._new_frame.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._new_frame.wait(), 0.5)
                    frames = await asyncio.to_thread(self.spool.pending, last, 1)
                frame = frames[0]
                last = frame.sequence
                in_flight[frame.sequence] = time.monotonic()
                self.status.sent += 1
                yield _request(self.context, self.recipe_id, frame)

        async with self.target.channel() as channel:
            stub = pb_grpc.InspectionServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.StreamInspect(requests(), metadata=metadata)
            self.status.state = "streaming"
            self.sink.status(self.status)
            async for response in call:
                sequence = response.result.frame.sequence
                if sequence not in in_flight:
                    logger.warning("result for frame %d that was not sent on this stream: ignored", sequence)
                    continue
                results[sequence] = response.result
                while in_flight and next(iter(in_flight)) in results:
                    done, sent_at = in_flight.popitem(last=False)
                    await self._hand_on(results.pop(done), sent_at)
                    slots.release()
        return self._source_done.is_set() and not in_flight and len(self.spool) == 0

    async def _hand_on(self, result: pb.InspectionResult, sent_at: float) -> None:
        """Give a verdict to the sinks, then let its frame leave the spool."""
        now = time.monotonic()
        self._latencies.append((now - sent_at) * 1e3)
        self._judged_times.append(now)
        status = self.status
        verdict = verdict_label(result)
        status.judged += 1
        status.verdicts[verdict] = status.verdicts.get(verdict, 0) + 1
        status.latency_ms_p50 = statistics.median(self._latencies)
        if len(self._judged_times) > 1:
            span = self._judged_times[-1] - self._judged_times[0]
            status.rate_fps = (len(self._judged_times) - 1) / span if span > 0 else 0.0
        if result.defects:
            status.last_defects = [f"{d.class_name} {d.confidence:.2f}" for d in result.defects][:5]
        self.sink.emit(result)
        await asyncio.to_thread(self.spool.done, result.frame.sequence)
        if now - self._reported_at >= STATUS_EVERY_S:  # keep the console and the retained status current
            self._reported_at = now
            status.spooled = len(self.spool)
            status.dropped = self.spool.dropped
            self.sink.status(status)
