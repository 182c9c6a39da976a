"""``lineqa health``, the image's HEALTHCHECK: exit 0 only when the gateway's ``grpc.health.v1`` says SERVING,
over TLS with the plant CA from the home; NOT_SERVING, an unreachable gateway or a certificate that does not
match are failures, and the one line it prints says which."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from lineqa.serving.embedded_triton import free_port
from lineqa.serving.pki import PlantPki

SERVICE = "lineqa.inspection.v1.InspectionService"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("health-home")
    PlantPki(home / "pki").init(["gateway.plant.local"])  # the certificate does not name localhost
    return home


@pytest.fixture(scope="module")
def gateway(home: Path) -> Iterator[tuple[int, health.HealthServicer]]:
    """A real gRPC server with the standard health servicer on the plant certificate."""
    pki = PlantPki(home / "pki")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials([(pki.server_key.read_bytes(), pki.server_cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield port, servicer
    server.stop(None)


def health_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "lineqa.cli", "health", "--home", str(home), "--timeout-s", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("server_status", "service", "exit_code", "says"),
    [
        (health_pb2.HealthCheckResponse.SERVING, "", 0, "SERVING"),
        (health_pb2.HealthCheckResponse.NOT_SERVING, "", 1, "NOT_SERVING"),
        (health_pb2.HealthCheckResponse.SERVING, SERVICE, 0, "SERVING"),
        (health_pb2.HealthCheckResponse.NOT_SERVING, SERVICE, 1, "NOT_SERVING"),
    ],
)
def test_exit_status_follows_the_health_service(
    home: Path,
    gateway: tuple[int, health.HealthServicer],
    server_status: int,
    service: str,
    exit_code: int,
    says: str,
) -> None:
    port, servicer = gateway
    servicer.set(service, server_status)
    done = health_cli(home, "--address", f"127.0.0.1:{port}", "--server-name", "gateway.plant.local",
                      *(["--service", service] if service else []))  # fmt: skip
    assert done.returncode == exit_code, done.stderr
    assert done.stdout.strip().endswith(f": {says}")


def test_alive_accepts_not_serving_but_not_silence(home: Path, gateway: tuple[int, health.HealthServicer]) -> None:
    """Liveness: a gateway whose Triton is down answers NOT_SERVING and must not be restarted for it."""
    port, servicer = gateway
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    alive = health_cli(home, "--address", f"127.0.0.1:{port}", "--server-name", "gateway.plant.local", "--alive")
    assert alive.returncode == 0 and alive.stdout.strip().endswith(": NOT_SERVING")
    silent = health_cli(home, "--address", f"127.0.0.1:{free_port()}", "--alive")
    assert silent.returncode == 1 and silent.stdout.strip().endswith(": UNAVAILABLE")


def test_server_name_comes_from_the_environment(home: Path, gateway: tuple[int, health.HealthServicer]) -> None:
    port, servicer = gateway
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    command = [sys.executable, "-m", "lineqa.cli", "health", "--home", str(home), "--timeout-s", "2"]
    env = {"LINEQA_HEALTH_ADDRESS": f"127.0.0.1:{port}", "LINEQA_HEALTH_SERVER_NAME": "gateway.plant.local"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**_base_env(), **env})
    assert done.returncode == 0 and done.stdout.strip() == f"127.0.0.1:{port}: SERVING", done.stdout + done.stderr


def test_a_certificate_for_another_name_is_not_healthy(home: Path, gateway: tuple[int, health.HealthServicer]) -> None:
    port, servicer = gateway
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    done = health_cli(home, "--address", f"127.0.0.1:{port}")  # 127.0.0.1 is not in the certificate
    assert done.returncode == 1
    assert "SERVING" not in done.stdout.replace("NOT_SERVING", "")


def test_an_unreachable_gateway_is_unavailable(home: Path) -> None:
    done = health_cli(home, "--address", f"127.0.0.1:{free_port()}")
    assert done.returncode == 1 and done.stdout.strip().endswith(": UNAVAILABLE"), done.stdout


def test_a_missing_ca_is_unhealthy_with_a_one_line_reason(tmp_path: Path) -> None:
    """Exit 1 (unhealthy), never 2: Docker and podman reserve 2 in health checks."""
    done = health_cli(tmp_path)
    assert done.returncode == 1
    assert "cannot read the CA certificate" in done.stdout and "Traceback" not in done.stdout + done.stderr


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("LINEQA_HEALTH_")}
