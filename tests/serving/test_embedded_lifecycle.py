"""The embedded Triton's life: it starts every time on a busy machine, and it dies with its gateway.

Starts were flaky through PyTriton's one-second handshake (5 of 28 failed with other work on the cores); the
server is now run directly and a start is retried. And when the gateway stops, or is killed with SIGKILL,
Triton and every backend stub are gone within the gateway's grace period: no orphan keeps a core or hundreds
of megabytes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from lineqa.serving.embedded_triton import EmbeddedTriton, EmbeddedTritonSettings, free_port
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import wait_until_serving
from tests.helpers.processes import busy_cores, process_tree, stop, wait_gone

pytestmark = pytest.mark.slow
STARTS = 20
GRACE_S = 10.0  # the gateway's default grace period


@pytest.fixture
def repository(tiny_models: dict[str, Path], tmp_path: Path) -> ModelRepository:
    repo = ModelRepository(tmp_path / "models")
    repo.add_version("metal", tiny_models["yolo11n"])
    return repo


def test_twenty_starts_on_a_busy_machine_all_succeed(repository: ModelRepository) -> None:
    durations = []
    with busy_cores(2):
        for _ in range(STARTS):
            triton = EmbeddedTriton(repository, EmbeddedTritonSettings(ort_threads=1))
            began = time.monotonic()
            try:
                triton.start({"metal": [1]})  # raises, with Triton's log, if it does not come up
                durations.append(time.monotonic() - began)
            finally:
                triton.stop()
    print(f"\n{STARTS} starts with 2 busy cores: {len(durations)} ready (model loaded), "
          f"{min(durations):.1f}-{max(durations):.1f} s each")  # fmt: skip
    assert len(durations) == STARTS


def _serving_gateway(home: Path) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    plant = provision_local_plant(home, cameras=("cam",))
    port = free_port()
    command = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port),
               "--metrics-port", "0"]  # fmt: skip
    gateway = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 120, process=gateway)
    tree = process_tree(gateway.pid)
    names = [p.name() for p in tree]
    assert "tritonserver" in names and any(n.startswith("triton_python") for n in names), names
    return gateway, tree


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_no_triton_process_outlives_its_gateway(how: str, repository: ModelRepository, tmp_path: Path) -> None:
    home = repository.root.parent
    gateway, tree = _serving_gateway(home)
    try:
        gateway.send_signal(getattr(signal, how))
        gateway.wait(GRACE_S + 5)
        left = wait_gone(tree, GRACE_S)
    finally:
        stop(gateway)
    assert not left, f"after {how} of the gateway, still running: {[(p.pid, p.name()) for p in left]}"


def test_a_killed_triton_leaves_no_stub_and_no_shared_memory(repository: ModelRepository) -> None:
    """Triton's backend stubs do not reliably notice a server killed under them (seen: stubs asleep for hours,
    their regions left in /dev/shm); the guardian clears both when Triton ends."""
    triton = EmbeddedTriton(repository, EmbeddedTritonSettings(ort_threads=1))
    try:
        triton.start({"metal": [1]})
        server = next(p for p in process_tree(os.getpid()) if p.name() == "tritonserver")
        stubs = [p for p in server.children(recursive=True) if p.name().startswith("triton_python")]
        assert stubs and list(Path("/dev/shm").glob(f"lineqa-{os.getpid()}-*"))
        server.kill()
        left = wait_gone(stubs, 5.0)
        regions = list(Path("/dev/shm").glob(f"lineqa-{os.getpid()}-*"))
    finally:
        triton.stop()
    assert not left, f"stubs outlived their server: {[p.pid for p in left]}"
    assert not regions, f"shared memory left behind: {regions}"


def test_triton_never_gets_the_gateways_own_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway starts its Triton before it binds its listener, and its default 50051 is in Linux's
    ephemeral range: a restarted gateway lost its port to its own Triton once. The kernel's choice is stood in
    for by a socket that offers 50051 twice, then 40000."""
    import lineqa.serving.embedded_triton as embedded_triton

    offered = iter([50051, 50051, 40000])

    class OfferingSocket:
        def __init__(self, *_: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> OfferingSocket:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def bind(self, _: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    kernel = SimpleNamespace(socket=OfferingSocket, AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM)
    monkeypatch.setattr(embedded_triton, "socket", kernel)  # this module's view only, not the process's
    assert free_port(frozenset({50051, 9464})) == 40000
