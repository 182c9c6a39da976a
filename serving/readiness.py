"""Wait for a gateway to say SERVING on ``grpc.health.v1``: what every launcher of ``lineqa serve`` (the demo,
the benchmark, the tests) needs before it sends frames, since the port opens before Triton is ready."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lineqa.serving.errors import ServingError


class NotServingError(ServingError):
    """The gateway exited, or was not SERVING in time."""


def health_status(channel: grpc.Channel, timeout_s: float, service: str = "") -> str:
    """The gateway's ``grpc.health.v1`` status name for ``service`` ("" is the whole server), or the gRPC error
    code's name (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``...) when it cannot be asked."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def wait_until_serving(
    address: str,
    credentials: grpc.ChannelCredentials,
    timeout_s: float,
    *,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
) -> None:
    """Poll health every half second until SERVING; fail at once if ``process`` (the gateway) exits."""
    where = f"; its log: {log}" if log else ""
    deadline = time.monotonic() + timeout_s
    with grpc.secure_channel(address, credentials) as channel:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise NotServingError(f"the gateway at {address} exited before serving{where}")
            if health_status(channel, 1) == "SERVING":
                return
            time.sleep(0.5)
    raise NotServingError(f"the gateway at {address} was not SERVING within {timeout_s:.0f} s{where}")
