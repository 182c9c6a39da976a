"""Camera authentication on every RPC, and per-frame authorization.

A gRPC server interceptor checks the ``authorization: Bearer <camera token>`` metadata of every call
before its handler runs (health and reflection are exempt: load balancers and tools call them without a
token) and binds the caller to the call. The servicer then checks each frame against it: a token proves one
camera of one tenant on one line, and a frame claiming another camera or line is refused with
PERMISSION_DENIED before anything is judged or stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.access import AccessDeniedError, Principal, TokenCache
from lineqa.serving.database import DatabaseError
from lineqa.serving.errors import ServingError
from lineqa.serving.storage_calls import StorageCalls

EXEMPT_SERVICES = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"})


class FrameNotAllowedError(ServingError):
    """A frame names a camera or line its caller's token is not bound to."""


@dataclass(frozen=True)
class Caller:
    token: str
    principal: Principal


_caller: ContextVar[Caller] = ContextVar("lineqa_caller")


def current_caller() -> Caller:
    """The authenticated caller of the RPC being handled (set by :class:`CameraTokenInterceptor`)."""
    return _caller.get()


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    raise AccessDeniedError("no camera token: send 'authorization: Bearer <token>' metadata")


def _rebuilt(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable[..., Any], bool], Any]) -> Any:
    """A handler like ``handler`` whose behaviour is ``wrap(behaviour, streams_responses)``."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attribute, make, streams in kinds:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return make(wrap(behaviour, streams), handler.request_deserializer, handler.response_serializer)
    raise TypeError(f"unsupported handler {handler!r}")


def _refusing(code: grpc.StatusCode, message: str) -> Callable[[Callable[..., Any], bool], Any]:
    def wrap(_: Callable[..., Any], __: bool) -> Callable[..., Awaitable[None]]:
        async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(code, message)

        return refuse

    return wrap


def _binding(caller: Caller) -> Callable[[Callable[..., Any], bool], Any]:
    def wrap(behaviour: Callable[..., Any], streams: bool) -> Callable[..., Any]:
        if streams:

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                _caller.set(caller)
                async for response in behaviour(request, context):
                    yield response

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _caller.set(caller)
            return await behaviour(request, context)

        return unary

    return wrap


class CameraTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: TokenCache, storage: StorageCalls) -> None:
        self.tokens = tokens
        self.storage = storage

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service = details.method.strip("/").split("/")[0]
        if handler is None or service in EXEMPT_SERVICES:
            return handler
        try:
            token = _bearer(details.invocation_metadata)
            principal = await self.storage.run("checking the camera token", self.tokens.authenticate, token)
        except AccessDeniedError as exc:
            return _rebuilt(handler, _refusing(grpc.StatusCode.UNAUTHENTICATED, str(exc)))
        except DatabaseError:
            return _rebuilt(handler, _refusing(grpc.StatusCode.UNAVAILABLE, "camera tokens cannot be checked now"))
        return _rebuilt(handler, _binding(Caller(token, principal)))


async def authorize_frame(
    tokens: TokenCache, caller: Caller, identity: pb.FrameIdentity, storage: StorageCalls
) -> Principal:
    """Check one frame (its identity complete) against its caller: its camera and line must be the token's.

    The token is checked again (through the cache), so a token revoked during a long stream stops it.
    """
    # Per frame: the cache answers on the event loop; only an expired entry costs a storage call.
    principal = tokens.cached(caller.token)
    if principal is None:
        principal = await storage.run("checking the camera token", tokens.authenticate, caller.token)
    if identity.camera_id != principal.camera_id:
        raise FrameNotAllowedError(
            f"this token is for camera {principal.camera_id!r} of tenant {principal.tenant_id!r}, "
            f"not camera {identity.camera_id!r}"
        )
    if identity.line_id != principal.line_id:
        raise FrameNotAllowedError(f"camera {principal.camera_id!r} is on line {principal.line_id!r}, "
                                   f"not {identity.line_id!r}")  # fmt: skip
    return principal


def status_for(exc: Exception) -> grpc.StatusCode:
    """The gRPC status that ends a call whose frame could not be authorized."""
    if isinstance(exc, FrameNotAllowedError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, AccessDeniedError):
        return grpc.StatusCode.UNAUTHENTICATED
    return grpc.StatusCode.UNAVAILABLE
