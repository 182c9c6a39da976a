"""A real Triton Inference Server, started in-process through PyTriton, serving a model repository.

This is the default for ``lineqa serve`` with no Triton URL: one machine, nothing else to install. The newest
version of each model in the repository is bound as that Triton model version, with a Python function that
runs the ONNX file with ONNX Runtime; Triton does the dynamic batching. Clients talk to it exactly as to
NVIDIA's Triton container (gRPC, same model names and versions), so the gateway has one client code path.

One version per model: PyTriton 0.7 names its per-model IPC sockets after the model name alone, so a second
version of a model cannot be bound beside the first ("Address already in use"). NVIDIA's Triton serves every
version the repository's version policy names; the embedded server serves the version on the line (the
promoted one, else the newest), and a promotion starts a successor server with the new version.

PyTriton starts the Triton binary by forking. Forking a process that already runs gRPC threads (the gateway)
can crash the child, so the server lives in its own host process (``python -m lineqa.serving.embedded_triton``),
started with fork+exec; :class:`EmbeddedTriton` starts and restarts that process, and
:class:`lineqa.serving.embedded_supervisor.EmbeddedSupervisor` watches it.

Security (RELIABILITY.md 19): every endpoint listens on 127.0.0.1 only, and the gRPC and HTTP model-control
and shared-memory APIs are restricted to callers holding a per-process random key.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineqa.serving.errors import ServingError
from lineqa.serving.model_repository import ModelRepository, ModelVersion

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
    # Threads that spin while waiting burn the cores the gateway and the other instances need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(version.model_file), options, providers=["CPUExecutionProvider"])
    input_name, output_name = version.metadata.input_name, version.metadata.output_name

    @batch  # type: ignore[untyped-decorator]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (output,) = session.run([output_name], {input_name: inputs[input_name]})
        return {output_name: output}

    return infer  # type: ignore[no-any-return]


class _TritonHost:
    """PyTriton in the current process: binds the newest version of every model and runs the server."""

    def __init__(
        self, repository: ModelRepository, endpoints: TritonEndpoints, admin_key: str, ort_threads: int
    ) -> None:
        self.repository = repository
        self.endpoints = endpoints
        self.admin_key = admin_key
        self.ort_threads = ort_threads
        self._triton: Any = None

    def start(self) -> None:
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
            exit_on_error=True,
        )
        self._triton = Triton(config=config)
        for name in self.repository.model_names():
            self._bind(self.repository.serving_version(name))
        self._triton.run()

    def _bind(self, version: ModelVersion) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        if version.backend != "onnxruntime":
            logger.warning(
                "%s v%d is a %s model: only NVIDIA's Triton serves it", version.name, version.version, version.backend
            )
            return
        settings = self.repository.settings(version.name)
        meta = version.metadata
        threads, instances = self._instances(settings.instance_count)
        self._triton.bind(
            model_name=version.name,
            model_version=version.version,
            infer_func=[_onnx_infer_function(version, threads) for _ in range(instances)],
            inputs=[Tensor(name=meta.input_name, dtype=np.float32, shape=(3, *meta.input_hw))],
            outputs=[Tensor(name=meta.output_name, dtype=np.float32, shape=meta.output_dims)],
            config=ModelConfig(
                max_batch_size=settings.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=settings.max_queue_delay_us),
            ),
            strict=True,
        )

    def _instances(self, configured: int) -> tuple[int, int]:
        """(ONNX Runtime threads per instance, instances). By default one single-threaded instance per core:
        on a CPU, parallel sessions beat one session's threads working on one frame (``lineqa bench`` on
        2 cores, YOLO11n at 640: 18.6 frames/s against 15.6 with one two-thread session). Given
        ``--ort-threads N``, the model's configured instance count, each with N threads."""
        if self.ort_threads:
            return self.ort_threads, configured
        return 1, max(configured, os.cpu_count() or 1)

    def alive(self) -> bool:
        return self._triton is not None and bool(self._triton.is_alive())

    def stop(self) -> None:
        if self._triton is not None:
            self._triton.stop()
            self._triton = None


def served_versions(repository: ModelRepository) -> dict[str, int]:
    """What the embedded server serves: the version on the line of every ONNX model."""
    served = {}
    for name in repository.model_names():
        current = repository.serving_version(name)
        if current.backend == "onnxruntime":
            served[name] = current.version
    return served


class EmbeddedTriton:
    """The embedded Triton host process. Start with :meth:`start`, stop with :meth:`stop` (or ``with``)."""

    def __init__(self, repository: ModelRepository, *, ort_threads: int = 0, start_timeout_s: float = 120.0) -> None:
        self.repository = repository
        self.ort_threads = ort_threads
        self.start_timeout_s = start_timeout_s
        self.endpoints = TritonEndpoints(free_port(), free_port(), free_port())
        self.admin_key = secrets.token_hex(16)
        self.served: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> TritonEndpoints:
        """Start the host process and wait until Triton and its models are ready."""
        import tritonclient.grpc as triton_grpc

        command = [
            sys.executable, "-m", "lineqa.serving.embedded_triton", "--repo", str(self.repository.root),
            "--grpc-port", str(self.endpoints.grpc_port), "--http-port", str(self.endpoints.http_port),
            "--metrics-port", str(self.endpoints.metrics_port), "--ort-threads", str(self.ort_threads),
        ]  # fmt: skip
        environment = {**os.environ, "LINEQA_TRITON_ADMIN_KEY": self.admin_key}  # not on the command line
        self._process = subprocess.Popen(command, env=environment)
        served = served_versions(self.repository)
        deadline = time.monotonic() + self.start_timeout_s
        client = triton_grpc.InferenceServerClient(self.endpoints.grpc_url)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise EmbeddedTritonError(f"the embedded Triton exited with status {self._process.returncode}")
                try:
                    if client.is_server_ready() and all(client.is_model_ready(n, str(v)) for n, v in served.items()):
                        self.served = served
                        logger.info("embedded Triton serving %s on %s", served, self.endpoints.grpc_url)
                        return self.endpoints
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        self.stop()
        raise EmbeddedTritonError(f"the embedded Triton was not ready within {self.start_timeout_s:.0f} s")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> TritonEndpoints:
        """Stop (if still running) and start again on the same ports, with the repository's newest models."""
        self.stop()
        return self.start()

    def __enter__(self) -> EmbeddedTriton:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """The host process: serve until told to stop (exit 0), until Triton dies (exit 1, to be restarted), or
    until its gateway is gone (a killed gateway must not leave a Triton behind)."""
    parser = argparse.ArgumentParser(prog="python -m lineqa.serving.embedded_triton", description=__doc__)
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--ort-threads", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    endpoints = TritonEndpoints(args.grpc_port, args.http_port, args.metrics_port)
    admin_key = os.environ.get("LINEQA_TRITON_ADMIN_KEY") or secrets.token_hex(16)
    host = _TritonHost(ModelRepository(args.repo), endpoints, admin_key, args.ort_threads)
    gateway = os.getppid()
    try:
        host.start()
        while not stopping and host.alive() and os.getppid() == gateway:
            time.sleep(0.2)
        return 1 if not (stopping or os.getppid() != gateway) else 0
    finally:
        _stop_within(host, HOST_STOP_TIMEOUT_S)


HOST_STOP_TIMEOUT_S = 10.0


def _stop_within(host: _TritonHost, timeout_s: float) -> None:
    """Stop PyTriton, but never wait longer than ``timeout_s``: now and then (seen in containers, where the
    gateway's stop must fit the engine's grace period) its stop leaves threads waiting that never finish."""
    stopper = threading.Thread(target=host.stop, name="pytriton-stop", daemon=True)
    stopper.start()
    stopper.join(timeout_s)
    if stopper.is_alive():
        logger.warning("PyTriton did not stop within %.0f s; exiting without it", timeout_s)


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: the interpreter would wait at exit for threads PyTriton leaves polling after its stop.
    os._exit(status)
