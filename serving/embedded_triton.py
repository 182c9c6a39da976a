"""A real Triton Inference Server, started in-process through PyTriton, serving a model repository.

This is the default for ``lineqa serve`` with no Triton URL: one machine, nothing else to install. The newest
version of each model in the repository is bound as that Triton model version, with a Python function that
runs the ONNX file with ONNX Runtime; Triton does the dynamic batching. Clients talk to it exactly as to
NVIDIA's Triton container (gRPC, same model names and versions), so the gateway has one client code path.

One version per model: PyTriton 0.7 names its per-model IPC sockets after the model name alone, so a second
version of a model cannot be bound beside the first ("Address already in use"). NVIDIA's Triton serves every
version the repository's version policy names; the embedded server serves the newest, and picks up a newer
one when it is started again.

Security (RELIABILITY.md 19): every endpoint listens on 127.0.0.1 only, and the gRPC and HTTP model-control
and shared-memory APIs are restricted to callers holding a per-process random key.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import ServingError
from serving.model_repository import ModelRepository, ModelVersion

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
RESTRICTED_HEADER = "lineqa-triton-admin-key"


class EmbeddedTritonError(ServingError):
    """The embedded Triton server could not start or bind a model."""


def free_port() -> int:
    """A port free on loopback now (Triton needs explicit ports; the race window is tiny and local)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _ensure_libpython_on_loader_path() -> None:
    """PyTriton's Python-backend stub dlopens libpython3.X.so; pyenv-style interpreters keep it off the
    system path, so the interpreter's LIBDIR goes on LD_LIBRARY_PATH (inherited by the Triton process)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


@dataclass(frozen=True)
class TritonEndpoints:
    grpc_port: int
    http_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"


def _onnx_infer_function(version: ModelVersion, threads: int) -> Callable[..., dict[str, np.ndarray]]:
    import onnxruntime as ort
    from pytriton.decorators import batch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(version.model_file), options, providers=["CPUExecutionProvider"])
    input_name, output_name = version.metadata.input_name, version.metadata.output_name

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (output,) = session.run([output_name], {input_name: inputs[input_name]})
        return {output_name: output}

    return infer  # type: ignore[no-any-return]


class EmbeddedTriton:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(self, repository: ModelRepository, *, ort_threads: int = 0, log_verbose: int = 0) -> None:
        self.repository = repository
        self.ort_threads = ort_threads
        self.log_verbose = log_verbose
        self.endpoints = TritonEndpoints(free_port(), free_port(), free_port())
        self.admin_key = secrets.token_hex(16)
        self._triton: Any = None
        self.served: dict[str, int] = {}

    def start(self) -> TritonEndpoints:
        from pytriton.triton import Triton, TritonConfig

        _ensure_libpython_on_loader_path()
        restricted = f"model-repository,shared-memory:{RESTRICTED_HEADER}={self.admin_key}"
        config = TritonConfig(
            grpc_address=LOOPBACK,
            grpc_port=self.endpoints.grpc_port,
            http_address=LOOPBACK,
            http_port=self.endpoints.http_port,
            metrics_address=LOOPBACK,
            metrics_port=self.endpoints.metrics_port,
            allow_metrics=True,
            grpc_restricted_protocol=restricted,
            http_restricted_api=restricted,
            log_verbose=self.log_verbose,
            exit_on_error=True,
        )
        self._triton = Triton(config=config)
        try:
            for name in self.repository.model_names():
                self._bind(self.repository.latest(name))
            self._triton.run()
        except Exception as exc:  # PyTriton raises assorted errors when the server binary cannot start
            self.stop()
            raise EmbeddedTritonError(f"the embedded Triton server did not start: {exc}") from exc
        logger.info("embedded Triton serving %s on %s", self.served, self.endpoints.grpc_url)
        return self.endpoints

    def _bind(self, version: ModelVersion) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        if version.backend != "onnxruntime":
            logger.warning(
                "%s v%d is a %s model: only NVIDIA's Triton serves it", version.name, version.version, version.backend
            )
            return
        settings = self.repository.settings(version.name)
        meta = version.metadata
        self._triton.bind(
            model_name=version.name,
            model_version=version.version,
            infer_func=_onnx_infer_function(version, self.ort_threads),
            inputs=[Tensor(name=meta.input_name, dtype=np.float32, shape=(3, *meta.input_hw))],
            outputs=[Tensor(name=meta.output_name, dtype=np.float32, shape=meta.output_dims)],
            config=ModelConfig(
                max_batch_size=settings.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=settings.max_queue_delay_us),
            ),
            strict=True,
        )
        self.served[version.name] = version.version

    def stop(self) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None

    def alive(self) -> bool:
        return self._triton is not None and bool(self._triton.is_alive())

    def restart(self) -> TritonEndpoints:
        """Stop (if still running) and start again on the same ports, with the repository's newest models."""
        self.stop()
        self.served = {}
        return self.start()

    async def supervise(self, period_s: float = 1.0) -> None:
        """Restart the server whenever it is found dead (RELIABILITY.md 3); runs until cancelled."""
        while True:
            await asyncio.sleep(period_s)
            if not self.alive():
                logger.error("embedded Triton is not running: restarting it")
                try:
                    await asyncio.to_thread(self.restart)
                except EmbeddedTritonError:
                    logger.exception("embedded Triton did not restart; trying again")

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
