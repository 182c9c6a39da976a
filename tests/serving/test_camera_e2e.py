"""``lineqa camera`` against a real ``lineqa serve`` (embedded Triton, TLS, camera token): a folder of part
images gives exactly one verdict line per image, in order; stopping the gateway mid-run spools frames and
drains them when it is back, still exactly one verdict per frame, none lost, none duplicated."""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lineqa.datasets.synth import Surface, generate_part
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import wait_until_serving
from tests.camera.test_mqtt import subscribed
from tests.helpers.processes import stop

pytestmark = pytest.mark.slow


def make_home(tmp_path: Path, model: Path, parts: int, tenant: str = "acme") -> tuple[LocalPlant, Path, Path]:
    home = tmp_path / "home"
    ModelRepository(home / "models").add_version("metal", model)
    recipes = {"bracket": "id: bracket\nmodel: {name: metal}\n"}
    plant = provision_local_plant(home, tenant=tenant, cameras=("cam-1",), recipes=recipes)
    token = tmp_path / "cam-1.token"
    token.write_text(plant.tokens["cam-1"])
    folder = tmp_path / "line"
    folder.mkdir()
    for i in range(parts):
        cv2.imwrite(str(folder / f"part{i}.jpg"), generate_part(Surface.METAL, 500 + i).image)
    return plant, token, folder


def serve(home: Path, port: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port), "--metrics-port", "0"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def camera(
    home: Path, token: Path, source: Path | str, port: int, out: Path, *extra: str, tenant: str = "acme"
) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "lineqa.cli",
        "camera",
        "--home",
        str(home),
        "--gateway",
        f"localhost:{port}",
        "--token-file",
        str(token),
        "--tenant",
        tenant,
        "--line",
        "line-1",
        "--camera",
        "cam-1",
        "--recipe",
        "bracket",
        "--source",
        str(source),
        "--jsonl",
        str(out),
        "--no-console",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def verdict_lines(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def natural(name: str) -> int:
    return int(name.removeprefix("part"))


def test_a_folder_gives_one_verdict_per_image_in_order(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], 25)
    port = free_port()
    gateway = serve(plant.home, port)
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 90, process=gateway)
        out = tmp_path / "verdicts.jsonl"
        agent = camera(plant.home, token, folder, port, out)
        log, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0, log[-3000:]
    finally:
        stop(gateway)
    lines = verdict_lines(out)
    assert [line["part_id"] for line in lines] == [f"part{i}" for i in range(25)]  # natural order, each once
    sequences = [line["sequence"] for line in lines]
    assert sequences == sorted(sequences) and len(set(sequences)) == 25
    assert all(line["verdict"] in ("PASS", "FAIL", "REVIEW") and line["record_id"] for line in lines)
    with sqlite3.connect(plant.home / "lineqa.db") as db:
        assert db.execute("SELECT COUNT(*) FROM inspections").fetchone() == (25,)


def test_gateway_down_mid_run_spools_and_drains_exactly_once(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], 40)
    port = free_port()
    gateway = serve(plant.home, port)
    out = tmp_path / "verdicts.jsonl"
    agent = None
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 90, process=gateway)
        agent = camera(plant.home, token, folder, port, out, "--fps", "5")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 8):
            time.sleep(0.2)
        stop(gateway)  # drains what is in flight, then exits: the camera keeps capturing into its spool
        judged_before_restart = len(verdict_lines(out))
        time.sleep(3)
        gateway = serve(plant.home, port)
        log, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0, log[-3000:]
    finally:
        stop(gateway)
        if agent is not None and agent.poll() is None:
            agent.kill()
    lines = verdict_lines(out)
    assert 8 <= judged_before_restart < 40
    assert [line["part_id"] for line in lines] == [f"part{i}" for i in range(40)]
    assert len({line["sequence"] for line in lines}) == 40
    assert all(line["verdict"] != "ERROR" for line in lines), [line for line in lines if line["verdict"] == "ERROR"]
    assert "unreachable" in log and "0 still spooled" in log
    with sqlite3.connect(plant.home / "lineqa.db") as db:
        assert db.execute("SELECT COUNT(*) FROM inspections").fetchone() == (40,)


def test_mqtt_part_in_position_trigger_and_verdict_topic(  # type: ignore[no-untyped-def]
    tiny_models: dict[str, Path], tmp_path: Path, broker
) -> None:
    """A PLC publishes part ids on the trigger topic; each part is judged once and its verdict published on
    the line's verdict topic, through the real gateway and the real Mosquitto."""
    tenant = f"t{uuid.uuid4().hex[:10]}"
    plant, token, _ = make_home(tmp_path, tiny_models["yolo11n"], 0, tenant=tenant)
    port = free_port()
    gateway = serve(plant.home, port)
    agent = None
    host, mqtt_port = broker
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 90, process=gateway)
        with subscribed(broker, f"lineqa/{tenant}/line-1/verdict") as verdicts:
            agent = camera(
                plant.home,
                token,
                "synthetic:metal",
                port,
                tmp_path / "v.jsonl",
                "--fps",
                "10",
                "--trigger",
                "mqtt",
                "--mqtt",
                f"{host}:{mqtt_port}",
                "--mqtt-verdicts",
                tenant=tenant,
            )
            publisher = paho.Client(CallbackAPIVersion.VERSION2)
            publisher.connect(host, mqtt_port)
            publisher.loop_start()
            time.sleep(4)  # the agent connects to the broker and the gateway
            parts = ["SN-100", "SN-101", "SN-101", "SN-102", "SN-103"]  # SN-101 announced twice (a PLC retry)
            for part in parts:
                publisher.publish(
                    f"lineqa/{tenant}/line-1/trigger", json.dumps({"part_id": part}), qos=1
                ).wait_for_publish()
                time.sleep(0.3)
            received = []
            deadline = time.monotonic() + 60
            while len(received) < 4 and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    received.append(verdicts.get(timeout=1))
            time.sleep(1)
            while not verdicts.empty():
                received.append(verdicts.get())
            publisher.loop_stop()
            publisher.disconnect()
    finally:
        if agent is not None:
            stop(agent)
        stop(gateway)
    assert sorted(v["part_id"] for v in received) == ["SN-100", "SN-101", "SN-102", "SN-103"]
    assert all(
        v["verdict"] in ("PASS", "FAIL", "REVIEW") and v["record_id"] and v["tenant"] == tenant for v in received
    )
