"""The hub's gRPC service to its plants (``lineqa.fleet.v1.HubService``), over mutual TLS.

Built as the gateway is: :func:`create_hub_server` returns the server and its bound port (tests bind port 0),
:func:`serve_until_signal` serves until SIGTERM or SIGINT and stops within a grace period. The TLS layer admits
only clients with a certificate of the hub's CA; every call then finds its plant by that certificate in the
registry (an unknown or revoked plant is UNAUTHENTICATED before anything else happens) and works on that
plant's tenant only: no request names a tenant.

``GetBundle`` is a long poll: a plant that has the newest bundle waits, and is answered as soon as the
repository changes (a promotion, a rollback, a new version: a watch looks every ``watch_period_s``) or, for
changes of recipes and grants, at the next ``recheck_s``. ``ReadFile`` streams a file from any offset, so a cut
download resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import grpc
from sqlalchemy.exc import SQLAlchemyError

from lineqa.content_store import ContentStoreError
from lineqa.fleet.bundles import HubBundles, StoredBundle
from lineqa.fleet.errors import FleetError, PlantAccessError
from lineqa.fleet.hub_ingest import HubIngest
from lineqa.fleet.plants import Plant, PlantRegistry
from lineqa.fleet.policy import PolicyStore
from lineqa.fleet.wire import WireError, decision_from_wire, part_from_wire, policy_to_wire
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2 as pb
from lineqa.protos.lineqa.fleet.v1 import fleet_pb2_grpc as pb_grpc
from lineqa.serving.model_repository import ModelRepository

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# What each of the hub's errors tells the plant; anything else is logged and answered INTERNAL.
STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    PlantAccessError: grpc.StatusCode.NOT_FOUND,
    WireError: grpc.StatusCode.INVALID_ARGUMENT,
    ContentStoreError: grpc.StatusCode.UNAVAILABLE,
    SQLAlchemyError: grpc.StatusCode.UNAVAILABLE,
    OSError: grpc.StatusCode.UNAVAILABLE,  # a file of the repository or the image store cannot be read now
    FleetError: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True)
class HubSettings:
    host: str = "127.0.0.1"
    port: int = 50061
    tls_cert: bytes = b""
    tls_key: bytes = b""
    client_ca: bytes = b""  # the hub CA's certificate: only plants it issued get through the handshake
    max_wait_s: float = 60.0  # the longest a GetBundle long poll is held
    recheck_s: float = 5.0  # a waiting GetBundle looks at recipes and grants this often
    watch_period_s: float = 0.5  # how often the repository is looked at for promotions and new versions
    chunk_bytes: int = 256 * 1024
    grace_s: float = 5.0


class RepositoryWatch:
    """Wakes the waiting long polls when the model repository changes: a version added, a promotion or rollback
    appended, settings rewritten. Cheap (it compares names, sizes and times), run every ``period_s``."""

    def __init__(self, repository: ModelRepository, period_s: float) -> None:
        self.repository = repository
        self.period_s = period_s
        self._changed = asyncio.Event()

    def fingerprint(self) -> tuple[Any, ...]:
        seen: list[Any] = []
        for name in self.repository.model_names():
            folder = self.repository.root / name
            with contextlib.suppress(OSError):
                entries = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())
                seen.append((name, tuple(entries)))
        return tuple(seen)

    def next_change(self) -> asyncio.Event:
        """An event set at the next change seen (take it before looking at the repository, to miss none)."""
        return self._changed

    async def run(self) -> None:
        last = await asyncio.to_thread(self.fingerprint)
        while True:
            await asyncio.sleep(self.period_s)
            try:
                now = await asyncio.to_thread(self.fingerprint)
            except Exception:
                logger.exception("cannot look at the model repository; trying again")
                continue
            if now != last:
                last = now
                changed, self._changed = self._changed, asyncio.Event()
                changed.set()


class HubServicer(pb_grpc.HubServiceServicer):
    def __init__(self, registry: PlantRegistry, bundles: HubBundles, ingest: HubIngest, policies: PolicyStore,
                 watch: RepositoryWatch, settings: HubSettings) -> None:  # fmt: skip
        self.registry = registry
        self.bundles = bundles
        self.ingest = ingest
        self.policies = policies
        self.watch = watch
        self.settings = settings

    async def _plant(self, context: grpc.aio.ServicerContext) -> Plant:
        """The registered, active plant whose certificate made this call; the call ends UNAUTHENTICATED
        otherwise."""
        pem = (context.auth_context().get("x509_pem_cert") or [b""])[0]
        try:
            if not pem:
                raise PlantAccessError("no client certificate")
            return await asyncio.to_thread(self.registry.identify, pem)
        except PlantAccessError as exc:
            logger.warning("refused a call to the hub from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            raise  # abort raises; this keeps the type checker informed

    async def _run(self, context: grpc.aio.ServicerContext, what: str, work: Callable[..., T], *args: Any) -> T:
        """Run blocking ``work`` on a worker thread; its errors end the call with the status :data:`STATUS_OF`
        gives them (the plant is told what it can act on; the log keeps the rest)."""
        try:
            return await asyncio.to_thread(work, *args)
        except Exception as exc:
            code = next((c for kind, c in STATUS_OF.items() if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
                logger.exception("%s failed", what)
                message = f"{what} failed on the hub; try again later"
            else:
                message = str(exc)
            await context.abort(code, message)
            raise

    async def GetBundle(self, request: pb.GetBundleRequest, context: grpc.aio.ServicerContext) -> pb.SignedBundle:  # noqa: N802
        plant = await self._plant(context)
        deadline = time.monotonic() + max(0.0, min(request.wait_s, self.settings.max_wait_s))
        while True:
            changed = self.watch.next_change()
            tenant = plant.tenant_id
            bundle: StoredBundle = await self._run(context, "building the bundle", self.bundles.current, tenant)
            left = deadline - time.monotonic()
            if bundle.number != request.known_number or left <= 0:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, self.settings.recheck_s))
        if bundle.number != request.known_number:
            logger.info("plant %s (%s): bundle %d (it has %d)", plant.plant_id, plant.tenant_id, bundle.number,
                        request.known_number)  # fmt: skip
        return pb.SignedBundle(number=bundle.number, manifest=bundle.manifest, signature=bundle.signature)

    async def ReadFile(  # noqa: N802
        self, request: pb.ReadFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.FileChunk]:
        plant = await self._plant(context)
        path, info = await self._run(context, "finding the file", self.bundles.file, plant.tenant_id,
                                     request.bundle_number, request.model, request.version, request.path)  # fmt: skip
        if not 0 <= request.offset <= info.size:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, f"offset {request.offset} is outside 0..{info.size}")
        if request.offset:
            logger.info("plant %s: %s v%d %s resumed at byte %d of %d", plant.plant_id, request.model,
                        request.version, request.path, request.offset, info.size)  # fmt: skip
        offset = request.offset
        with await self._run(context, "opening the file", _binary, path) as handle:
            handle.seek(offset)
            while chunk := await asyncio.to_thread(handle.read, self.settings.chunk_bytes):
                yield pb.FileChunk(offset=offset, data=chunk)
                offset += len(chunk)

    async def GetDataPolicy(self, request: pb.GetDataPolicyRequest, context: grpc.aio.ServicerContext) -> pb.DataPolicy:  # noqa: N802
        plant = await self._plant(context)
        policy = await self._run(context, "reading the data policy", self.policies.in_force, plant.tenant_id)
        return policy_to_wire(policy)

    async def PushParts(self, request: pb.PushPartsRequest, context: grpc.aio.ServicerContext) -> pb.PushPartsResponse:  # noqa: N802
        plant = await self._plant(context)
        refused: list[pb.Refused] = []
        parts, decisions = [], []
        for message in request.parts:
            try:
                parts.append(part_from_wire(message))
            except WireError as exc:
                refused.append(pb.Refused(item=message.record_id, reason=str(exc)))
        for decision in request.decisions:
            try:
                decisions.append(decision_from_wire(decision))
            except WireError as exc:
                refused.append(pb.Refused(item=f"decision:{decision.decision_id}", reason=str(exc)))
        outcome = await self._run(context, "taking in parts", self.ingest.push, plant, parts, decisions)
        refused += [pb.Refused(item=item, reason=reason) for item, reason in outcome.refused]
        return pb.PushPartsResponse(new_parts=outcome.new_parts, new_decisions=outcome.new_decisions,
                                    known=outcome.known, wanted_images=outcome.wanted_images,
                                    refused=refused)  # fmt: skip

    async def PutImage(self, request: pb.PutImageRequest, context: grpc.aio.ServicerContext) -> pb.PutImageResponse:  # noqa: N802
        plant = await self._plant(context)
        samples = await self._run(context, "storing an image", self.ingest.put_image, plant, request.sha256,
                                  request.ext, request.data)  # fmt: skip
        return pb.PutImageResponse(samples=samples)


def _binary(path: Path) -> BinaryIO:
    return path.open("rb")


@dataclass
class HubServer:
    server: grpc.aio.Server
    port: int
    watch: RepositoryWatch


def create_hub_server(
    registry: PlantRegistry, bundles: HubBundles, ingest: HubIngest, policies: PolicyStore, settings: HubSettings
) -> HubServer:
    """The hub's server (not started) on ``settings.host:port`` (0: any free port), mutual TLS only."""
    if not (settings.tls_cert and settings.tls_key and settings.client_ca):
        raise FleetError("the hub serves mutual TLS only: it needs its certificate, key and CA ('lineqa admin pki "
                         "init' in the hub's home)")  # fmt: skip
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.ping_timeout_ms", 10_000),
        # A plant on a flaky link may ping every second to notice a stalled link soon; a ping is a few bytes.
        ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    server = grpc.aio.server(options=options)
    watch = RepositoryWatch(bundles.repository, settings.watch_period_s)
    servicer = HubServicer(registry, bundles, ingest, policies, watch, settings)
    pb_grpc.add_HubServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key, settings.tls_cert)], root_certificates=settings.client_ca, require_client_auth=True
    )
    port = server.add_secure_port(f"{settings.host}:{settings.port}", credentials)
    return HubServer(server, port, watch)


async def serve_until_signal(hub: HubServer, grace_s: float) -> None:
    """Serve until SIGTERM or SIGINT, then stop within ``grace_s`` (long polls are ended; plants ask again)."""
    await hub.server.start()
    watching = asyncio.create_task(hub.watch.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        watching.cancel()
        await hub.server.stop(grace_s)
