"""The Compose stack (``deploy/compose.yaml``).

The ``laptop`` profile is brought up and down for real with podman-compose: the gateway (embedded Triton)
answers SERVING on its published port, its container's health check passes, the review app answers over
HTTPS with the plant certificate, and ``down`` stops both within the grace period (SIGTERM drains the
gateway; nothing is killed) and leaves no container behind.

The ``plant`` profile needs NVIDIA's Triton on a GPU and the public postgres, nginx and mosquitto images, none
of which can be pulled on this project's machines (no registry, no GPU): it is checked as configuration only,
which is all this test claims for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import pytest
import yaml

from lineqa.serving.embedded_triton import free_port
from lineqa.serving.readiness import wait_until_serving
from tests.deploy.conftest import PlantHome
from tests.deploy.containers import REPO, Built, podman
from tests.deploy.triton_release import check_command, check_release

COMPOSE = REPO / "deploy" / "compose.yaml"


def services(profile: str) -> dict[str, dict[str, Any]]:
    """The services a profile starts, as written (YAML anchors merged, variables not substituted)."""
    every: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: spec for name, spec in every.items() if profile in spec.get("profiles", [])}


def test_laptop_profile_is_one_gateway_and_the_review_app_on_one_home() -> None:
    laptop = services("laptop")
    assert set(laptop) == {"gateway-laptop", "review-laptop"}
    assert laptop["gateway-laptop"]["command"] == ["serve"]
    assert "environment" not in laptop["gateway-laptop"]  # no Triton URL, no database URL: embedded defaults
    assert laptop["review-laptop"]["command"][:2] == ["review", "serve"]
    for spec in laptop.values():
        assert spec["volumes"] == ["${LINEQA_PLANT_HOME:-./home}:/var/lib/lineqa"]
        assert spec["read_only"] is True and spec["tmpfs"] == ["/tmp"]


def test_plant_profile_is_triton_on_a_gpu_behind_replicated_gateways() -> None:
    plant = services("plant")
    assert set(plant) == {"triton", "postgres", "migrate", "gateway", "front", "review", "mosquitto"}
    triton = plant["triton"]
    assert triton["image"].startswith("${LINEQA_TRITON_IMAGE:-") and check_release(triton["image"]) >= (25, 10)
    shell, flag, script = triton["command"]
    assert (shell, flag) == ("sh", "-c") and "exec tritonserver" in script and "--model-repository=/models" in script
    check_command(script.replace("$$", "$"))  # Compose's escaped $ is the shell's
    assert triton["volumes"] == ["${LINEQA_PLANT_HOME:-./home}/models:/models:ro"]
    (gpu,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]

    gateway = plant["gateway"]
    assert gateway["environment"]["LINEQA_TRITON_URL"] == "triton:8001"
    # The services log in as the application role, under row-level security; only 'migrate' is the owner.
    assert gateway["environment"]["LINEQA_DB"].startswith("postgresql+psycopg://lineqa_app@postgres:5432/")
    assert gateway["deploy"]["replicas"] >= 2 and "ports" not in gateway  # reached through 'front' only
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    assert plant["review"]["environment"]["LINEQA_DB"] == gateway["environment"]["LINEQA_DB"]
    migrate = plant["migrate"]
    assert migrate["environment"]["LINEQA_DB_OWNER"].startswith("postgresql+psycopg://lineqa@postgres:5432/")
    assert migrate["command"][:2] == ["db", "migrate"] and migrate["restart"] == "no"
    for service in ("gateway", "review"):
        assert plant[service]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    nginx = (REPO / "deploy" / "nginx" / "gateway.conf").read_text()
    assert "server gateway:50051" in nginx and "grpc_pass grpcs://" in nginx and "grpc_ssl_verify on" in nginx
    assert "./nginx/gateway.conf:/etc/nginx/conf.d/default.conf:ro" in plant["front"]["volumes"]
    mosquitto = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in mosquitto


def test_no_password_is_committed() -> None:
    text = COMPOSE.read_text()
    assert set(re.findall(r"PASSWORD: (\S+)", text)) == {"${LINEQA_DB_PASSWORD:-}", "${LINEQA_APP_DB_PASSWORD:-}"}
    assert "@postgres" in text and ":@" not in text and not re.search(r"//\w+:[^@$]+@", text)


def compose(project: str, env: dict[str, str], *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "podman_compose", "-f", str(COMPOSE), "-p", project, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, **env})


def test_podman_compose_renders_both_profiles() -> None:
    pytest.importorskip("podman_compose", reason="podman-compose (the dev extra) is not installed")
    if shutil.which("podman") is None:
        pytest.skip("podman-compose needs podman, which is not installed")
    env = {"LINEQA_PLANT_HOME": "/srv/lineqa", "LINEQA_IMAGE": "localhost/lineqa-serving:test"}
    for profile, expected in (("laptop", {"gateway-laptop", "review-laptop"}), ("plant", set(services("plant")))):
        done = compose("lineqa-config", env, "--profile", profile, "config")
        assert done.returncode == 0, done.stderr
        rendered = yaml.safe_load(done.stdout)["services"]
        assert expected <= set(rendered)
        assert {v for s in expected for v in rendered[s].get("volumes", []) if "/var/lib/lineqa" in v} <= {
            "/srv/lineqa:/var/lib/lineqa"
        }


@pytest.mark.slow
def test_laptop_profile_up_and_down(serving_image: Built, plant_home: PlantHome) -> None:
    pytest.importorskip("podman_compose", reason="podman-compose (the dev extra) is not installed")
    if shutil.which("podman") is None:
        pytest.skip("no podman")
    plant = plant_home.plant
    project = f"lineqa-test-{uuid.uuid4().hex[:8]}"
    gateway_port, review_port = free_port(), free_port()
    env = {
        "LINEQA_IMAGE": serving_image.tag,
        "LINEQA_PLANT_HOME": str(plant.home),
        "LINEQA_GATEWAY_PORT": f"127.0.0.1:{gateway_port}",
        "LINEQA_METRICS_PORT": f"127.0.0.1:{free_port()}",
        "LINEQA_REVIEW_PORT": f"127.0.0.1:{review_port}",
    }
    started = time.monotonic()
    up = compose(project, env, "--profile", "laptop", "up", "-d")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        wait_until_serving(f"localhost:{gateway_port}", plant.channel_credentials(), 180)
        up_s = time.monotonic() - started
        containers = json.loads(
            podman("ps", "--format", "json", "--filter", f"label=io.podman.compose.project={project}").stdout
        )
        names = {c["Labels"]["com.docker.compose.service"]: c["Names"][0] for c in containers}
        assert set(names) == {"gateway-laptop", "review-laptop"}
        assert podman("healthcheck", "run", names["gateway-laptop"], check=False).returncode == 0

        context = ssl.create_default_context(cafile=str(plant.pki.ca_cert))
        deadline, page = time.monotonic() + 60, ""
        while time.monotonic() < deadline and not page:
            try:
                with urllib.request.urlopen(f"https://localhost:{review_port}/login", context=context, timeout=5) as r:
                    page = r.read().decode() if r.status == 200 else ""
            except OSError:
                time.sleep(0.5)
        assert "password" in page.lower()
    finally:
        started_down = time.monotonic()
        stop = compose(project, env, "--profile", "laptop", "stop", "-t", "30")
        stop_s = time.monotonic() - started_down
        ended = stopped_containers(project)
        down = compose(project, env, "--profile", "laptop", "down", "-t", "30")
        down_s = time.monotonic() - started_down
    assert stop.returncode == 0 and down.returncode == 0, stop.stdout + stop.stderr + down.stdout + down.stderr
    # SIGTERM must end each service by itself: 143 or 0, never 137 (killed at the grace period).
    assert all(code in (0, 143) for code, _ in ended.values()) and stop_s < 25, (
        f"stop took {stop_s:.0f} s; exit codes and last log lines:\n"
        + "\n".join(f"--- {name}: exit {code}\n{log}" for name, (code, log) in ended.items())
    )
    left = podman("ps", "-a", "--format", "json", "--filter", f"label=io.podman.compose.project={project}").stdout
    assert json.loads(left or "[]") == []
    print(f"compose laptop profile: up (SERVING) {up_s:.1f} s, stop {stop_s:.1f} s, down {down_s:.1f} s")


def stopped_containers(project: str) -> dict[str, tuple[int, str]]:
    """Each stopped container of ``project``: its exit code and the end of its log."""
    listed = podman("ps", "-a", "--format", "json", "--filter", f"label=io.podman.compose.project={project}").stdout
    ended: dict[str, tuple[int, str]] = {}
    for container in json.loads(listed or "[]"):
        name = container["Names"][0]
        code = int(podman("inspect", "--format", "{{.State.ExitCode}}", name, check=False).stdout.strip() or -1)
        logs = podman("logs", "--timestamps", "--tail", "25", name, check=False)
        ended[name] = (code, logs.stdout + logs.stderr)
    return ended
