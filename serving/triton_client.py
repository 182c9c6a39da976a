"""The one client for any Triton: the embedded server or NVIDIA's container, over gRPC with asyncio.

Every call carries a deadline (RELIABILITY.md 2). Failures become typed errors chosen by gRPC status code,
never by message text: the gateway turns them into ERROR results with a reason, never into PASS.

Frames are sent as the served model takes them, which the server's model metadata says: ``uint8`` (the
embedded server's models scale it themselves: a quarter of the bytes) or float32 scaled here (NVIDIA's
onnxruntime backend serving the exported file as it is).
"""

from __future__ import annotations

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from lineqa.serving.errors import ServingError
from lineqa.vision.errors import ModelOutputError
from lineqa.vision.letterbox import scale_input


class TritonError(ServingError):
    """Triton could not produce a result."""


class ModelUnavailableError(TritonError):
    """Triton is down or unreachable, or the model (version) is not loaded."""


class ModelTimeoutError(TritonError):
    """Triton did not answer within the deadline."""


_TIMEOUT_CODES = {"StatusCode.DEADLINE_EXCEEDED"}
# gRPC's default reconnect backoff grows to 120 s; a restarted Triton must be used again within seconds
# (RELIABILITY.md 3), so reconnects are retried at most every second.
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
]


def _typed(exc: InferenceServerException, what: str) -> TritonError:
    status = str(exc.status() or "")
    if status in _TIMEOUT_CODES:
        return ModelTimeoutError(f"{what}: Triton did not answer within the deadline")
    return ModelUnavailableError(f"{what}: {exc.message() or status}")


class TritonClient:
    """Async gRPC client bound to one Triton URL (``host:port``).

    The gRPC channel belongs to an event loop, so it is opened on first use, inside the loop that uses it.
    """

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url
        self.timeout_s = timeout_s
        self._opened: triton_aio.InferenceServerClient | None = None
        self._input_types: dict[tuple[str, int], str] = {}

    @property
    def _client(self) -> triton_aio.InferenceServerClient:
        if self._opened is None:
            self._opened = triton_aio.InferenceServerClient(self.url, channel_args=_CHANNEL_ARGS)
        return self._opened

    async def infer(
        self,
        model: str,
        version: int,
        batch: np.ndarray,
        *,
        input_name: str = "images",
        output_name: str = "output0",
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """Run one ``uint8`` NCHW batch; return the raw output. Raises ModelUnavailableError, ModelTimeoutError."""
        what = f"model {model!r} version {version}"
        timeout = timeout_s or self.timeout_s
        datatype = await self._input_type(model, version, input_name, timeout)
        tensor = batch if datatype == "UINT8" else scale_input(batch)
        request = InferInput(input_name, list(tensor.shape), datatype)
        request.set_data_from_numpy(np.ascontiguousarray(tensor))
        try:
            result = await self._client.infer(
                model,
                [request],
                model_version=str(version),
                outputs=[InferRequestedOutput(output_name)],
                client_timeout=timeout,
            )
        except InferenceServerException as exc:
            raise _typed(exc, what) from exc
        output = result.as_numpy(output_name)
        if output is None:
            raise ModelOutputError(f"{what} returned no {output_name!r} output")
        return np.asarray(output)

    async def _input_type(self, model: str, version: int, input_name: str, timeout_s: float) -> str:
        """The datatype the served version takes (``UINT8`` or ``FP32``), asked once per version."""
        key = (model, version)
        if key not in self._input_types:
            what = f"model {model!r} version {version}"
            try:
                metadata = await self._client.get_model_metadata(
                    model, str(version), as_json=True, client_timeout=timeout_s
                )
            except InferenceServerException as exc:
                raise _typed(exc, what) from exc
            types = {i["name"]: i["datatype"] for i in metadata.get("inputs", [])}
            if types.get(input_name) not in ("UINT8", "FP32"):
                raise ModelUnavailableError(f"{what} takes {types} as input, not a UINT8 or FP32 {input_name!r}")
            self._input_types[key] = types[input_name]
        return self._input_types[key]

    async def is_ready(self, model: str, version: int) -> bool:
        """True when the server and this model version are ready (for health checks; never raises)."""
        try:
            return bool(
                await self._client.is_server_ready(client_timeout=self.timeout_s)
                and await self._client.is_model_ready(model, str(version), client_timeout=self.timeout_s)
            )
        except InferenceServerException:
            return False

    async def retarget(self, url: str) -> None:
        """Talk to ``url`` from now on (the embedded server came back on other ports after a crash); calls
        still on the old connection fail and their frames get ERROR results."""
        old, self._opened = self._opened, None
        self.url = url
        self._input_types.clear()
        if old is not None:
            await old.close()

    async def close(self) -> None:
        if self._opened is not None:
            await self._opened.close()
            self._opened = None
