"""The gRPC inspection gateway: ``InspectionService`` (unary and bidirectional stream), health, reflection.

Built as grpc's own examples build servers: :func:`create_server` returns the server and its bound port (tests
bind port 0), :func:`run_until_signal` serves until SIGTERM/SIGINT and shuts down gracefully: health goes
NOT_SERVING, new calls are refused, in-flight frames finish and are recorded, then the server stops within
the grace period.

A stream runs up to ``stream_in_flight`` frames at once; results come back as they finish, each echoing its
frame's identity. A frame the gateway cannot judge gets its own ERROR result, a frame whose identity is
incomplete (no camera, line or sequence number) an INVALID_FRAME one; the stream goes on. Everything is
bounded (RELIABILITY.md 13): a stream's frame counts as in flight until its result has been handed to the
transport, so a client that stops reading is not read further either; at most ``max_in_flight`` frames are
judged at once overall, past that streams are not read (flow control) and a unary call gets
RESOURCE_EXHAUSTED; at most ``max_concurrent_rpcs`` calls are open at once.

Every call carries a camera token (:mod:`lineqa.serving.auth`); every frame is checked against it before it is
judged, and a frame for another camera ends the call with PERMISSION_DENIED, storing nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lineqa.content_store import ContentStoreError
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessDeniedError, TokenCache
from lineqa.serving.auth import (
    CameraTokenInterceptor,
    FrameNotAllowedError,
    authorize_frame,
    current_caller,
    status_for,
)
from lineqa.serving.database import DatabaseError
from lineqa.serving.errors import ServingError
from lineqa.serving.frame_reference import add_reference
from lineqa.serving.inspector import Inspector, identity_problem
from lineqa.serving.references import ReferenceUnavailableError
from lineqa.vision.errors import ImageError

logger = logging.getLogger(__name__)

_NOT_AUTHORIZED = (AccessDeniedError, FrameNotAllowedError, DatabaseError)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["InspectionService"].full_name


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 64 * 1024 * 1024
    stream_in_flight: int = 8
    max_in_flight: int = 64  # frames judged at once across all calls; bounds memory under overload
    max_concurrent_rpcs: int = 256  # open calls (camera streams) at once; more are refused with RESOURCE_EXHAUSTED
    grace_s: float = 10.0
    health_period_s: float = 1.0
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None  # set: mutual TLS, client certificates required
    plaintext_any: bool = False  # without TLS the gateway listens on loopback only, unless this is set


class InspectionServicer(pb_grpc.InspectionServiceServicer):
    def __init__(self, inspector: Inspector, settings: GatewaySettings, tokens: TokenCache) -> None:
        self.inspector = inspector
        self.settings = settings
        self.tokens = tokens
        # Set on shutdown: streams stop taking frames, finish (and record) the ones in flight, and end.
        self.draining = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.max_in_flight)
        self.open_calls = 0
        self._calls_changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def _call(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One inspection call: refused while the gateway drains; counted, so the drain knows when it is done."""
        if self.draining.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down: connect to another")
        self.open_calls += 1
        try:
            yield
        finally:
            self.open_calls -= 1
            async with self._calls_changed:
                self._calls_changed.notify_all()

    async def drained(self) -> None:
        """Until every open inspection call has ended."""
        async with self._calls_changed:
            await self._calls_changed.wait_for(lambda: self.open_calls == 0)

    async def Inspect(self, request: pb.InspectRequest, context: grpc.aio.ServicerContext) -> pb.InspectResponse:  # noqa: N802
        async with self._call(context):
            return await self._inspect_one(request, context)

    async def _inspect_one(self, request: pb.InspectRequest, context: grpc.aio.ServicerContext) -> pb.InspectResponse:
        caller = current_caller()
        problem = identity_problem(request.frame.identity)
        if problem:
            return pb.InspectResponse(result=self.inspector.refuse(caller.principal.tenant_id, request.frame, problem))
        try:
            principal = await authorize_frame(self.tokens, caller, request.frame.identity, self.inspector.storage)
        except _NOT_AUTHORIZED as exc:
            await context.abort(status_for(exc), str(exc))
        if self.slots.locked():  # a unary caller is told to back off rather than queued without bound
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "the gateway is at its limit of frames in flight")
        async with self.slots:
            result = await self.inspector.inspect(principal.tenant_id, request.frame)
        return pb.InspectResponse(result=result)

    async def AddReference(  # noqa: N802
        self, request: pb.AddReferenceRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddReferenceResponse:
        """Store a golden sample for the caller's tenant, the tenant its camera token proves (never one the
        request could name), in the store ``lineqa references add`` writes to."""
        async with self._call(context):
            store, tenant = self.inspector.references, current_caller().principal.tenant_id
            limits = self.inspector.settings.limits
            try:
                reference_id = await asyncio.to_thread(add_reference, store, tenant, request.image, limits)
            except ImageError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the reference image: {exc}")
            except ReferenceUnavailableError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except (OSError, ContentStoreError):
                logger.exception("tenant %s: a reference could not be stored", tenant)
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the reference could not be stored; send it again")
            return pb.AddReferenceResponse(id=reference_id)

    async def StreamInspect(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.StreamInspectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamInspectResponse]:
        async with self._call(context):
            async for response in self._stream(request_iterator, context):
                yield response

    async def _stream(
        self, request_iterator: AsyncIterator[pb.StreamInspectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamInspectResponse]:
        window = self.settings.stream_in_flight
        # At most ``window`` results wait to be sent: a frame's slot is freed only once its result is sent.
        results: asyncio.Queue[pb.StreamInspectResponse | None] = asyncio.Queue(window + 1)
        slots = asyncio.Semaphore(window)
        tasks: set[asyncio.Task[None]] = set()
        caller = current_caller()
        refused: list[Exception] = []

        async def judge(tenant: str, frame: pb.Frame) -> None:
            try:
                result = await self.inspector.inspect(tenant, frame)
            finally:
                self.slots.release()  # the global slot bounds judging; the stream's own, sending too
            await results.put(pb.StreamInspectResponse(result=result))

        async def read() -> None:
            try:
                async for request in _until(request_iterator, self.draining):
                    # Back-pressure: stop reading (HTTP/2 flow control holds the camera) while full.
                    await slots.acquire()
                    problem = identity_problem(request.frame.identity)
                    if problem:
                        result = self.inspector.refuse(caller.principal.tenant_id, request.frame, problem)
                        await results.put(pb.StreamInspectResponse(result=result))
                        continue
                    try:
                        principal = await authorize_frame(
                            self.tokens, caller, request.frame.identity, self.inspector.storage
                        )
                    except _NOT_AUTHORIZED as exc:  # the frames already taken finish; then the call ends
                        slots.release()
                        refused.append(exc)
                        break
                    await self.slots.acquire()
                    task = asyncio.create_task(judge(principal.tenant_id, request.frame))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                await results.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await results.get()) is not None:
                yield item
                slots.release()
            if refused:
                await context.abort(status_for(refused[0]), str(refused[0]))
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def _until(
    requests: AsyncIterator[pb.StreamInspectRequest], stop: asyncio.Event
) -> AsyncIterator[pb.StreamInspectRequest]:
    """The stream's requests until it ends or ``stop`` is set (even while waiting for the next one)."""
    iterator = aiter(requests)
    stopped = asyncio.create_task(stop.wait())
    try:
        while not stop.is_set():
            following: asyncio.Future[pb.StreamInspectRequest] = asyncio.ensure_future(anext(iterator))
            waiting: list[asyncio.Future[Any]] = [following, stopped]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if following not in done:
                following.cancel()
                return
            try:
                yield following.result()
            except StopAsyncIteration:
                return
    finally:
        stopped.cancel()


class HealthReporter:
    """Keeps ``grpc.health.v1`` truthful: SERVING only while the inspector's dependencies are ready."""

    def __init__(self, servicer: health.aio.HealthServicer, inspector: Inspector, period_s: float) -> None:
        self.servicer = servicer
        self.inspector = inspector
        self.period_s = period_s
        self.stopping = False

    async def set(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.servicer.set(name, status)

    async def run(self) -> None:
        while not self.stopping:
            try:
                await self.set(await self.inspector.ready())
            except Exception:  # a failing check means not ready; it must never stop the reporter
                logger.exception("health check failed")
                await self.set(False)
            await asyncio.sleep(self.period_s)


@dataclass
class Gateway:
    server: grpc.aio.Server
    port: int
    health: HealthReporter
    servicer: InspectionServicer


def create_server(inspector: Inspector, settings: GatewaySettings, tokens: TokenCache) -> Gateway:
    """Build the server (not started) with its bound port (``settings.port`` 0: any free port); every call
    but health and reflection needs a camera token that ``tokens`` accepts. Without TLS it listens on a
    loopback address only, unless ``settings.plaintext_any`` says otherwise (RELIABILITY.md 15)."""
    if not ((settings.tls_cert and settings.tls_key) or settings.plaintext_any or is_loopback(settings.host)):
        raise ServingError(f"plaintext on {settings.host}: without TLS the gateway listens on loopback only")
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Dead peers (RELIABILITY.md 14): a ping every 20 s; no answer within 10 s drops the connection and
        # frees its calls. grpc 1.85 needs the HTTP/2 ping timeout too for that to happen.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.ping_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.aio.server(
        options=options,
        interceptors=[CameraTokenInterceptor(tokens, inspector.storage)],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    servicer = InspectionServicer(inspector, settings, tokens)
    pb_grpc.add_InspectionServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert and settings.tls_key:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key, settings.tls_cert)],
            root_certificates=settings.tls_client_ca,
            require_client_auth=settings.tls_client_ca is not None,
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    return Gateway(server, port, HealthReporter(health_servicer, inspector, settings.health_period_s), servicer)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


DRAIN_NOTICE_S = 2.0
"""Least time between SIGTERM and closing the listener, so health checkers see NOT_SERVING."""


async def run_until_signal(gateway: Gateway, grace_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then drain: NOT_SERVING, refuse new inspection calls (health still
    answers, so load balancers see NOT_SERVING), end streams after their in-flight frames are judged and
    recorded, stop within ``grace_s``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.server.start()
    health_task = asyncio.create_task(gateway.health.run())
    await stop.wait()
    _lifecycle(f"lineqa gateway stopping: NOT_SERVING, draining in-flight frames for up to {grace_s:.0f} s")
    gateway.health.stopping = True
    health_task.cancel()
    await gateway.health.set(False)
    gateway.servicer.draining.set()
    began = time.monotonic()
    try:
        await asyncio.wait_for(gateway.servicer.drained(), grace_s)
        _lifecycle(f"lineqa gateway drained in {time.monotonic() - began:.1f} s")
    except asyncio.TimeoutError:
        _lifecycle(f"lineqa gateway: {gateway.servicer.open_calls} calls still open after {grace_s:.0f} s")
    # Probes that ask every second or two must get to see NOT_SERVING rather than a closed port: the listener
    # stays up (health answering, new inspection calls refused) for a short notice even when drained sooner.
    notice_s = min(DRAIN_NOTICE_S, grace_s / 2)
    await asyncio.sleep(max(0.0, began + notice_s - time.monotonic()))
    await gateway.server.stop(max(0.5, grace_s - (time.monotonic() - began)))
    _lifecycle(f"lineqa gateway stopped listening {time.monotonic() - began:.1f} s after the signal")


def _lifecycle(line: str) -> None:
    """Start and stop steps go to stderr whatever the log level: an operator reading a slow stop needs them."""
    print(line, file=sys.stderr, flush=True)
