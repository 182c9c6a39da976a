"""The camera agent's core: captures go through the spool to one ``StreamInspect`` call per camera, and
verdicts come back out through the spool's outbox to the sinks.

The stream keeps up to ``window`` frames in flight. Results may come back in any order (the gateway judges
frames of a stream concurrently); a frame's first answer is taken in sequence order, so a PLC and the
JSON-lines file see parts in the order the line made them. Taking a verdict is one spool transaction: the
verdict goes to the outbox and the frame leaves the spool (:meth:`Spool.finish`); the sinks then deliver from
the outbox, each exactly once (or, for the console, at most once) across crashes of the agent at any instant.

A transient ERROR (see :mod:`~lineqa.serving.camera.retry`) keeps its frame in the spool, marked answered;
by default the ERROR is handed on at once (the gate's answer, in time), and the frame is sent again with
backoff until judged, its verdict handed on marked late. A final ERROR is handed on once, counted.

When the stream breaks (gateway restart, network, a keepalive ping unanswered, the call's deadline), the agent
reconnects with backoff and sends again every frame still in the spool, oldest first; the gateway answers any
it had already judged with the original verdict. Each call is half-closed after 80 % of its deadline, so it
ends cleanly (in-flight frames answered) and a new one is opened. A refused token or camera
(UNAUTHENTICATED, PERMISSION_DENIED) stops the agent: retrying cannot fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import statistics
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.camera.model import AgentStatus, Context, Delivery, FrameSource
from lineqa.serving.camera.retry import RetryPolicy, TransientAnswer, is_transient
from lineqa.serving.camera.sinks import SinkSet, verdict_label
from lineqa.serving.camera.spool import Spool, SpooledFrame
from lineqa.serving.errors import ServingError
from lineqa.vision.errors import ImageError
from lineqa.vision.image import ImageEncoding, decode_image, sniff_encoding

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0  # the console and the retained MQTT status are refreshed this often
SAVE_EVERY_S = 1.0  # the sinks' confirmed positions are saved (and the outbox pruned) this often
FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT}


class AgentError(ServingError):
    """The gateway refuses this camera (token, camera or line): a configuration problem, not an outage."""


@dataclass(frozen=True)
class StreamSettings:
    """How the agent talks to the gateway. A dead gateway or a half-open connection (a switch lost its state,
    a cable was pulled) is noticed by an HTTP/2 ping sent every ``keepalive_s`` and unanswered for
    ``keepalive_timeout_s``; a gateway that stops answering frames while answering pings, by the call's
    ``deadline_s``. The gateway must let pings through that often (it allows one per 5 s)."""

    window: int = 8
    max_backoff_s: float = 5.0
    keepalive_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    deadline_s: float = 300.0

    def __post_init__(self) -> None:
        if self.window < 1 or min(self.max_backoff_s, self.keepalive_s, self.keepalive_timeout_s, self.deadline_s) <= 0:
            raise ValueError(f"invalid stream settings {self}")

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),  # keep pinging while the line is idle
            # gRPC 1.6x and later time an unanswered ping out by this; keepalive_timeout_ms alone never fires.
            ("grpc.http2.ping_timeout_ms", int(self.keepalive_timeout_s * 1000)),
        ]


@dataclass(frozen=True)
class GatewayTarget:
    address: str
    credentials: grpc.ChannelCredentials | None  # None: plaintext, only when asked for explicitly
    token: str

    def channel(self, options: list[tuple[str, int]]) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.address, options=options)
        return grpc.aio.secure_channel(self.address, self.credentials, options=options)


class _Ending(Enum):
    FINISHED = "finished"  # the source ended and every frame was judged
    ROTATED = "rotated"  # half-closed before the deadline: open the next call at once
    ENDED = "ended"  # the gateway ended the call on its own: reconnect with backoff


@dataclass(frozen=True)
class GoldenSample:
    """The camera's golden sample (a photograph of a good part): uploaded with ``AddReference`` at the start
    of every stream, then named by its id in every frame. Uploading per stream, not once, is what lets a
    gateway replica or a rebuilt home that never saw it judge the next frame; the gateway stores it once."""

    image: pb.Image
    id: str

    @classmethod
    def read(cls, path: Path) -> GoldenSample:
        """The file as it is (its SHA-256 is its id), checked here: a bad file stops the agent at start, not
        every stream at the gateway."""
        try:
            data = path.read_bytes()
            decode_image(data)
        except (OSError, ImageError) as exc:
            raise AgentError(f"golden sample {path}: {exc}") from None
        encoding = pb.IMAGE_ENCODING_JPEG if sniff_encoding(data) is ImageEncoding.JPEG else pb.IMAGE_ENCODING_PNG
        return cls(pb.Image(encoding=encoding, data=data), hashlib.sha256(data).hexdigest())


def _request(context: Context, recipe_id: str, frame: SpooledFrame, reference_id: str = "") -> pb.StreamInspectRequest:
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
    request = pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id=recipe_id, image=image))
    if reference_id:
        request.frame.reference_id = reference_id
    return request


@dataclass
class _InFlight:
    sent_at: float
    attempts: int  # attempts before this one


class CameraAgent:
    def __init__(
        self,
        target: GatewayTarget,
        context: Context,
        recipe_id: str,
        spool: Spool,
        sinks: SinkSet,
        *,
        stream: StreamSettings | None = None,
        retry: RetryPolicy | None = None,
        golden: GoldenSample | None = None,
    ) -> None:
        self.target = target
        self.golden = golden
        self.context = context
        self.recipe_id = recipe_id
        self.spool = spool
        self.sinks = sinks
        self.settings = stream or StreamSettings()
        self.retry = retry or RetryPolicy()
        self.status = AgentStatus(state="connecting")
        self._latencies: deque[float] = deque(maxlen=200)
        self._judged_times: deque[float] = deque(maxlen=50)
        self._new_frame = asyncio.Event()
        self._source_done = asyncio.Event()
        self._delivered = asyncio.Event()

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

    # -- the run ------------------------------------------------------------------------------------------

    async def run(self, source: FrameSource | None, stop: asyncio.Event) -> AgentStatus:
        """Capture from ``source`` and stream until the source ends and the spool is empty, or ``stop``. The
        outputs are first handed whatever an earlier run left undelivered in the outbox."""
        loop = asyncio.get_running_loop()
        halt = threading.Event()
        capture = None
        self.sinks.attach(self.spool)
        if source is None:
            self._source_done.set()
        else:
            capture = asyncio.create_task(asyncio.to_thread(self._capture, source, loop, halt))
        outputs = asyncio.create_task(self._outputs())
        streaming = asyncio.create_task(self._stream_until_done())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([streaming, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            if source is not None:
                source.close()
            for task in (streaming, stopped, outputs):
                task.cancel()
            if capture is not None:
                await asyncio.gather(capture, return_exceptions=True)
            await asyncio.to_thread(self._flush)
        if streaming.done() and not streaming.cancelled() and streaming.exception():
            raise streaming.exception()  # type: ignore[misc]
        self.status.state = "stopped"
        self.sinks.status(self.status)
        return self.status

    def _flush(self) -> None:
        """Hand the sinks what is left in the outbox, save their positions, count what is still spooled."""
        self.sinks.pump()
        self.sinks.save()
        self._count_spool()

    def _count_spool(self) -> None:
        self.status.spooled = len(self.spool)
        self.status.retrying = self.spool.answered
        self.status.dropped = self.spool.dropped

    async def _outputs(self) -> None:
        """Pump the outbox to the sinks after every verdict (and each second, for a sink that failed), save
        their positions and refresh the status."""
        saved_at = reported_at = 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._delivered.wait(), STATUS_EVERY_S)
            self._delivered.clear()
            await asyncio.to_thread(self.sinks.pump)
            now = time.monotonic()
            if now - saved_at >= SAVE_EVERY_S:
                saved_at = now
                await asyncio.to_thread(self.sinks.save)
            if now - reported_at >= STATUS_EVERY_S:
                reported_at = now
                await asyncio.to_thread(self._count_spool)
                self.sinks.status(self.status)

    # -- the stream ---------------------------------------------------------------------------------------

    async def _stream_until_done(self) -> None:
        failures = 0
        while True:
            try:
                ending = await self._session()
                if ending is _Ending.FINISHED:
                    return
                if ending is _Ending.ROTATED:
                    failures = 0
                    continue
                failures += 1
                logger.warning("gateway %s ended the stream; reconnecting", self.target.address)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in FATAL:
                    raise AgentError(f"the gateway refused camera {self.context.camera}: {exc.details()}") from None
                failures += 1
                logger.warning("gateway %s unreachable (%s): spooling", self.target.address, exc.code().name)
            self.status.state = "spooling"
            self.sinks.status(self.status)
            delay = min(self.settings.max_backoff_s, 0.2 * 2 ** min(failures, 16))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))

    def _next_frame(self, last: int, retrying: frozenset[int]) -> tuple[SpooledFrame | None, float]:
        """Worker thread: an answered frame whose retry is due, else the next unanswered one after ``last``;
        with it, how long to wait for a new frame if there is none (-1 when the spool is empty)."""
        due = self.spool.due(time.time(), retrying, 1)
        if due:
            return due[0], 0.0
        pending = self.spool.pending(last, 1)
        if pending:
            return pending[0], 0.0
        if len(self.spool) == 0:
            return None, -1.0
        retry_at = self.spool.next_retry_at()
        return None, 0.5 if retry_at is None else min(0.5, max(0.01, retry_at - time.time()))

    async def _session(self) -> _Ending:
        """One StreamInspect call, until the source has ended and every frame was judged, the call is rotated
        before its deadline, or it breaks (an ``AioRpcError``)."""
        first: OrderedDict[int, _InFlight] = OrderedDict()  # unanswered frames in flight, in send order
        retries: dict[int, _InFlight] = {}  # answered frames sent again
        results: dict[int, pb.InspectionResult] = {}
        slots = asyncio.Semaphore(self.settings.window)
        metadata = (("authorization", f"Bearer {self.target.token}"),)
        rotate_at = time.monotonic() + 0.8 * self.settings.deadline_s
        rotated = False

        async def requests() -> AsyncIterator[pb.StreamInspectRequest]:
            nonlocal rotated
            last = -1
            while True:
                await slots.acquire()
                while True:
                    if time.monotonic() >= rotate_at:
                        rotated = True
                        return  # half-close before the deadline: in-flight frames are answered, then a new call
                    self._new_frame.clear()
                    frame, wait_s = await asyncio.to_thread(self._next_frame, last, frozenset(retries))
                    if frame is not None:
                        break
                    if wait_s < 0 and self._source_done.is_set() and not first and not retries:
                        return  # every frame judged: half-close, the gateway ends the call
                    wait_s = min(wait_s if wait_s > 0 else 0.5, max(0.0, rotate_at - time.monotonic()))
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._new_frame.wait(), wait_s)
                if frame.answered:
                    retries[frame.sequence] = _InFlight(time.monotonic(), frame.attempts)
                else:
                    last = frame.sequence
                    first[frame.sequence] = _InFlight(time.monotonic(), frame.attempts)
                self.status.sent += 1
                yield _request(self.context, self.recipe_id, frame, reference_id)

        async with self.target.channel(self.settings.channel_options()) as channel:
            stub = pb_grpc.InspectionServiceStub(channel)  # type: ignore[no-untyped-call]
            reference_id = await self._upload_golden(stub, metadata)
            call = stub.StreamInspect(requests(), metadata=metadata, timeout=self.settings.deadline_s)
            self.status.state = "streaming"
            self.sinks.status(self.status)
            async for response in call:
                sequence = response.result.frame.sequence
                if sequence in retries:
                    # Out of ``retries`` only once settled: until the spool has the answer, the frame is still
                    # due there, and ``requests`` must not send it yet again.
                    await self._settle(sequence, response.result, retries[sequence], answered=True)
                    del retries[sequence]
                    slots.release()
                    continue
                if sequence not in first:
                    logger.warning("result for frame %d that was not sent on this stream: ignored", sequence)
                    continue
                results[sequence] = response.result
                while first and next(iter(first)) in results:
                    done, flight = first.popitem(last=False)
                    await self._settle(done, results.pop(done), flight, answered=False)
                    slots.release()
        if rotated:
            return _Ending.ROTATED
        if self._source_done.is_set() and not first and not retries and not await asyncio.to_thread(len, self.spool):
            return _Ending.FINISHED
        return _Ending.ENDED

    async def _upload_golden(self, stub: pb_grpc.InspectionServiceStub, metadata: tuple[tuple[str, str], ...]) -> str:
        """The id frames name their golden sample by, after making sure this gateway holds it ('' without one)."""
        if self.golden is None:
            return ""
        try:
            request = pb.AddReferenceRequest(image=self.golden.image)
            answer = await stub.AddReference(request, metadata=metadata, timeout=min(30.0, self.settings.deadline_s))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise AgentError(f"gateway {self.target.address} predates golden samples sent by cameras") from None
            raise
        return str(answer.id)

    async def _settle(self, sequence: int, result: pb.InspectionResult, flight: _InFlight, *, answered: bool) -> None:
        """Take one result: the frame's verdict (to the outbox, the frame leaves the spool), or a transient
        ERROR (the frame stays for a retry; its first one may be handed on as the answer)."""
        if result.verdict == pb.VERDICT_ERROR:
            code = pb.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_")
            self.status.errors[code] = self.status.errors.get(code, 0) + 1
        delivery: Delivery | None
        if not is_transient(result):
            delivery = await asyncio.to_thread(self.spool.finish, sequence, result, late=answered)
            self.status.judged += delivery is not None
        else:
            retry_at = time.time() + self.retry.backoff.delay_s(flight.attempts + 1)
            hand_on = not answered and self.retry.answer is TransientAnswer.ANSWER
            delivery = await asyncio.to_thread(self.spool.defer, sequence, result, retry_at=retry_at, hand_on=hand_on)
            if not answered:
                logger.warning(
                    "frame %d (part %s): %s; kept for a retry", sequence, result.frame.part_id, result.error.message
                )
        if delivery is not None:
            self._handed(delivery, flight.sent_at)

    def _handed(self, delivery: Delivery, sent_at: float) -> None:
        now = time.monotonic()
        status = self.status
        if not delivery.late:
            self._latencies.append((now - sent_at) * 1e3)
            status.latency_ms_p50 = statistics.median(self._latencies)
        self._judged_times.append(now)
        verdict = verdict_label(delivery.result)
        status.verdicts[verdict] = status.verdicts.get(verdict, 0) + 1
        status.late += delivery.late
        if len(self._judged_times) > 1:
            span = self._judged_times[-1] - self._judged_times[0]
            status.rate_fps = (len(self._judged_times) - 1) / span if span > 0 else 0.0
        if delivery.result.defects:
            status.last_defects = [f"{d.class_name} {d.confidence:.2f}" for d in delivery.result.defects][:5]
        self._delivered.set()
