"""The serving image, built from the Dockerfile and run as a plant runs it: the home on a volume, the gateway
with its embedded Triton inside, TLS with the plant's certificate; ``lineqa camera`` on the host streams real
DeepPCB boards to it and gets one verdict per board; the image's HEALTHCHECK is the gRPC health service;
``podman stop`` drains and exits cleanly. The root file system is read-only, as in the Kubernetes manifests."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lineqa.serving.embedded_triton import free_port
from lineqa.serving.readiness import wait_until_serving
from tests.deploy.conftest import PlantHome
from tests.deploy.containers import IMAGE_UID, Built, documented_gateway_options, podman, running

pytestmark = pytest.mark.slow

BOARDS = 8


def test_image_is_slim_non_root_and_keeps_no_build_secret(serving_image: Built) -> None:
    image = json.loads(podman("image", "inspect", serving_image.tag).stdout)[0]
    config = image["Config"]
    assert config["User"] == "lineqa"
    assert image["Healthcheck"]["Test"][:3] == ["CMD", "lineqa", "health"]  # kept: built with --format docker
    assert "/var/lib/lineqa" in config["Volumes"]
    assert not [e for e in config["Env"] if e.startswith("PIP_CERT")]
    probe = (
        "import importlib.util as u, os, sys\n"
        "missing = [m for m in ('pytriton', 'onnxruntime', 'tritonclient', 'lineqa.review.app')\n"
        "           if u.find_spec(m) is None]\n"
        "heavy = [m for m in ('torch', 'ultralytics', 'torchvision') if u.find_spec(m) is not None]\n"
        "print(os.getuid(), missing, heavy, os.path.exists('/run/secrets/ca'))"
    )
    done = podman("run", "--rm", "--network", "none", "--entrypoint", "python", serving_image.tag, "-c", probe)
    assert done.stdout.split("\n")[0] == f"{IMAGE_UID} [] [] False"


def test_host_camera_streams_real_boards_to_the_container(
    serving_image: Built, plant_home: PlantHome, deeppcb_root: Path, tmp_path: Path
) -> None:
    boards = tmp_path / "boards"
    boards.mkdir()
    for source in sorted(deeppcb_root.glob("group*/*/*_test.jpg"))[:BOARDS]:
        (boards / source.name).write_bytes(source.read_bytes())
    plant = plant_home.plant
    port = free_port()
    started = time.monotonic()
    # As docs/deployment.md runs it (restart policy, stop timeout, shared memory), on a read-only root as
    # Kubernetes does (readOnlyRootFilesystem, an emptyDir on /tmp): only the volume and /tmp writable.
    options = (*documented_gateway_options(), "--read-only", "--tmpfs", "/tmp")
    with running(serving_image.tag, "serve", ports={50051: port}, home=plant.home, options=options) as container:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 180)
        ready_s = time.monotonic() - started
        assert podman("healthcheck", "run", container, check=False).returncode == 0  # 'lineqa health' inside

        out = tmp_path / "verdicts.jsonl"
        camera = [
            sys.executable, "-m", "lineqa.cli", "camera", "--gateway", f"localhost:{port}",
            "--ca", str(plant.pki.ca_cert), "--token-file", str(plant_home.token_file), "--tenant", "acme",
            "--line", "line-1", "--camera", "cam-1", "--recipe", "pcb", "--source", str(boards),
            "--jsonl", str(out), "--no-console", "--spool-dir", str(tmp_path / "spool"),
        ]  # fmt: skip
        agent = subprocess.run(camera, capture_output=True, text=True, timeout=300)
        assert agent.returncode == 0, agent.stdout + agent.stderr

        state = json.loads(podman("inspect", container).stdout)[0]
        assert state["Config"]["StopTimeout"] == 30 and state["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        stopped = podman("stop", container, timeout_s=60)  # the container's own stop timeout, as documented
        assert stopped.returncode == 0
        assert podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip() == "0"
    print(f"container SERVING {ready_s:.1f} s after start")

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["part_id"] for line in lines] == sorted(p.stem for p in boards.iterdir())  # each once, in order
    assert all(line["verdict"] in ("PASS", "FAIL", "REVIEW") and line["record_id"] for line in lines), lines
    # Every DeepPCB test board has defects, and the committed detector finds them.
    assert sum(line["verdict"] == "FAIL" for line in lines) >= BOARDS // 2
    with sqlite3.connect(plant.home / "lineqa.db") as db:  # the records are on the volume, committed
        assert db.execute("SELECT COUNT(*) FROM inspections").fetchone() == (BOARDS,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


VOLUME_PROBE = """
import os, stat
home = '/var/lib/lineqa'
keys, modes = [], {}
for root, dirs, files in os.walk(home):
    for name in dirs + files:
        path = os.path.join(root, name)
        modes[os.path.relpath(path, home)] = stat.S_IMODE(os.stat(path).st_mode)
        if name in files and b'PRIVATE KEY' in open(path, 'rb').read():
            keys.append(os.path.relpath(path, home))
print(sorted(keys))
print(oct(stat.S_IMODE(os.stat(home).st_mode)))
for path in sorted(modes):
    print(path, oct(modes[path]))
"""


def test_the_volume_holds_no_ca_key_and_what_the_gateway_writes_is_private(
    serving_image: Built, plant_home: PlantHome, tmp_path: Path
) -> None:
    """What the serving container sees of the home: the gateway's own key, never the CA's; the home, its
    database and the images the gateway keeps are the image's user's only."""
    plant = plant_home.plant
    port = free_port()
    with running(serving_image.tag, "serve", "--image-policy", "all", ports={50051: port}, home=plant.home,
                 options=("--read-only", "--tmpfs", "/tmp")) as container:  # fmt: skip
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 180)
        camera = [
            sys.executable, "-m", "lineqa.cli", "camera", "--gateway", f"localhost:{port}",
            "--ca", str(plant.pki.ca_cert), "--token-file", str(plant_home.token_file), "--tenant", "acme",
            "--line", "line-1", "--camera", "cam-1", "--recipe", "pcb", "--source", "synthetic:pcb", "--count", "2",
            "--jsonl", str(tmp_path / "verdicts.jsonl"), "--no-console", "--spool-dir", str(tmp_path / "spool"),
        ]  # fmt: skip
        agent = subprocess.run(camera, capture_output=True, text=True, timeout=300)
        assert agent.returncode == 0, agent.stdout + agent.stderr
        seen = podman("exec", container, "python", "-c", VOLUME_PROBE).stdout.splitlines()
    keys, home_mode, *listing = seen
    modes = dict(line.rsplit(" ", 1) for line in listing)
    assert keys == "['pki/server.key']"  # no CA key: the gateway cannot sign anything
    assert home_mode == "0o700" and modes["lineqa.db"] == "0o600" and modes["pki/server.key"] == "0o600"
    kept = [path for path in modes if path.startswith("images/") and path.endswith(".jpg")]
    assert kept, "the gateway kept no image: nothing to check"
    assert modes["images"] == "0o700" and all(modes[path] == "0o600" for path in kept)
