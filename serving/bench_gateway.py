"""The gateway ``lineqa bench`` measures: a fresh home serving the model, the ``lineqa serve`` child process,
and how cameras reach it.

Everything the bench needs to reach the gateway (address, transport security, per-camera tokens, the serve
options that go with them) comes from :func:`provision`, so that securing the gateway changes one function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from lineqa.serving.bench import BenchError
from lineqa.serving.embedded_triton import LOOPBACK, free_port
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository, ModelSettings, ModelVersion
from lineqa.serving.readiness import NotServingError, wait_until_serving

MODEL_NAME = "bench"
RECIPE_ID = "bench"
LINE_ID = "line-1"
# The review band starts at Ultralytics' default predict confidence, so both see the same candidates.
RECIPE = "id: bench\nmodel: {name: bench}\ndefaults: {fail_confidence: 0.5, review_confidence: 0.25}\n"


@dataclasses.dataclass(frozen=True)
class Connection:
    """How the bench reaches the gateway it starts, and the ``lineqa serve`` options that make it so."""

    target: str
    credentials: grpc.ChannelCredentials
    tokens: dict[str, str]
    serve_args: tuple[str, ...]

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(self.target, self.credentials)

    def metadata(self, camera: str) -> tuple[tuple[str, str], ...]:
        """Call metadata for one camera's stream: its bearer token."""
        return (("authorization", f"Bearer {self.tokens[camera]}"),)


def provision(home: Path, cameras: list[str]) -> Connection:
    """Make ``home`` ready for ``cameras`` to connect and say how they do: as in production, TLS with the
    home's plant certificate and one token per camera (what a camera costs the gateway includes both)."""
    plant = provision_local_plant(
        home, tenant="bench", line=LINE_ID, cameras=tuple(cameras), recipes={RECIPE_ID: RECIPE}
    )
    port = free_port()
    return Connection(
        f"localhost:{port}", plant.channel_credentials(), plant.tokens, ("--host", LOOPBACK, "--port", str(port))
    )


def prepare_home(home: Path, onnx: Path, *, gpu: bool = False) -> ModelVersion:
    """A fresh lineqa home with the model as the only one served (on the GPU with ``gpu``: ONNX Runtime's CUDA
    provider in the embedded Triton); :func:`provision` sets the recipe using it.

    Fresh per run, so every (camera, sequence) is new to the records database and nothing is a replay.
    """
    settings = ModelSettings(gpu=True) if gpu else None
    return ModelRepository(home / "models").add_version(MODEL_NAME, onnx, settings=settings)


class GatewayProcess:
    """``lineqa serve`` in a child process; stopped like production stops it (SIGTERM), killed if it hangs.

    ``environment`` should be this process's environment from before Ultralytics was imported: importing it
    sets ``OMP_NUM_THREADS=1`` (and its own switches), which a production gateway would not inherit.
    """

    def __init__(self, home: Path, connection: Connection, log_path: Path, environment: dict[str, str]) -> None:
        self.home = home
        self.connection = connection
        self.log_path = log_path
        self.environment = environment
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BenchError("the gateway is not running")
        return self._process.pid

    def __enter__(self) -> GatewayProcess:
        command = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(self.home), "--metrics-port", "0",
                   *self.connection.serve_args]  # fmt: skip
        with self.log_path.open("wb") as log:  # a file, not a pipe: nobody reads it while the gateway runs
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment)
        return self

    def __exit__(self, *_: object) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    async def wait_serving(self, timeout_s: float) -> None:
        """Until health says SERVING (Triton started, model loaded, database writable)."""
        try:
            await asyncio.to_thread(
                wait_until_serving,
                self.connection.target,
                self.connection.credentials,
                timeout_s,
                process=self._process,
            )
        except NotServingError as exc:
            raise BenchError(f"{exc}; its log ends:\n{self.log_tail()}") from None
