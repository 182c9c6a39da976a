"""``lineqa camera`` against a real ``lineqa serve`` (embedded Triton, TLS, camera token): a folder of part
images gives exactly one verdict line per image, in order; stopping the gateway mid-run spools frames and
drains them when it is back, still exactly one verdict per frame, none lost, none duplicated; the agent
SIGKILLed at 50 seeded random instants hands each verdict on once to the JSON-lines file and to MQTT, and
captures each file of its hot folder once; Triton killed mid-run: the frames it missed are answered ERROR in
time and judged late. Synthetic images: the behaviour under test is delivery, not judgement."""

from __future__ import annotations

import contextlib
import json
import queue
import random
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.camera.test_mqtt import subscribed
from tests.helpers.line import (
    camera,
    delivered_once,
    line_count,
    make_home,
    run_to_end,
    serve,
    serving,
    stop_both,
    verdict_lines,
    wait_for_lines,
)
from tests.helpers.processes import stop

pytestmark = pytest.mark.slow


def test_a_folder_gives_one_verdict_per_image_in_order(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], 25)
    gateway, port = serving(plant)
    try:
        out = tmp_path / "verdicts.jsonl"
        run_to_end(camera(plant.home, token, folder, port, out))
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
    gateway, port = serving(plant)
    out = tmp_path / "verdicts.jsonl"
    agent = None
    try:
        agent = camera(plant.home, token, folder, port, out, "--fps", "5")
        wait_for_lines(out, 8)
        stop(gateway)  # drains what is in flight, then exits: the camera keeps capturing into its spool
        judged_before_restart = len(verdict_lines(out))
        time.sleep(3)
        gateway = serve(plant.home, port)
        log = run_to_end(agent)
    finally:
        stop_both(gateway, agent)
    lines = verdict_lines(out)
    assert 8 <= judged_before_restart < 40
    assert delivered_once(lines, [f"part{i}" for i in range(40)]) == {"lost": 0, "duplicated": 0}
    finals = [line for line in lines if not line["retrying"]]
    assert all(line["verdict"] != "ERROR" for line in finals), [line for line in finals if line["verdict"] == "ERROR"]
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
    gateway, port = serving(plant)
    agent = None
    host, mqtt_port = broker
    try:
        with subscribed(broker, f"lineqa/{tenant}/line-1/+/verdict") as verdicts:
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


KILLS = 50
KILL_SEED = 15


def test_agent_sigkilled_at_random_instants_hands_each_verdict_on_once(  # type: ignore[no-untyped-def]
    tiny_models: dict[str, Path], tmp_path: Path, broker
) -> None:
    """The agent (hot folder, --done-dir, JSON lines and MQTT verdicts) SIGKILLed 50 times at seeded random
    instants: while starting (reading its outputs back) and while verdicts are being handed on; restarted each
    time with the same arguments, then run to the end. Every file is captured once (one record per file at the
    gateway), and each (camera, sequence) is in the file and on the broker exactly once, in order."""
    rng = random.Random(KILL_SEED)
    parts = 160
    tenant = f"t{uuid.uuid4().hex[:10]}"
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], parts, tenant=tenant)
    done, out = tmp_path / "done", tmp_path / "verdicts.jsonl"
    host, mqtt_port = broker
    options = ("--fps", "8", "--done-dir", str(done), "--mqtt", f"{host}:{mqtt_port}", "--mqtt-verdicts")
    gateway, port = serving(plant)
    instants: Counter[str] = Counter()
    try:
        started = time.monotonic()
        with subscribed(broker, f"lineqa/{tenant}/line-1/cam-1/verdict") as messages:
            for _ in range(KILLS):
                before = line_count(out)
                agent = camera(plant.home, token, folder, port, out, *options, tenant=tenant)
                if rng.random() < 0.2:
                    instants["starting"] += 1
                    time.sleep(rng.uniform(0.05, 1.5))
                else:
                    instants["handing on"] += 1
                    deadline = time.monotonic() + 30
                    while line_count(out) <= before and agent.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.005)
                    time.sleep(rng.uniform(0.0, 0.3))
                agent.kill()
                agent.communicate()
            killed_after = line_count(out)
            run_to_end(camera(plant.home, token, folder, port, out, *options, tenant=tenant))
            time.sleep(1)  # the broker passes on the last verdicts
            received = []
            while not messages.empty():
                received.append(messages.get())
        elapsed = time.monotonic() - started
    finally:
        stop(gateway)
    names = [f"part{i}" for i in range(parts)]
    lines = verdict_lines(out)
    file_figures = delivered_once(lines, names)
    mqtt_figures = delivered_once(received, names)
    print(
        f"\nkill test (seed {KILL_SEED}): {KILLS} SIGKILLs ({dict(instants)}), {parts} frames; JSON lines "
        f"{len(lines)} ({killed_after} before the last run) {file_figures}; MQTT {len(received)} {mqtt_figures}; "
        f"{elapsed:.0f} s"
    )
    assert file_figures == mqtt_figures == {"lost": 0, "duplicated": 0}
    assert [(m["sequence"], m["verdict"], m["late"]) for m in received] == [
        (line["sequence"], line["verdict"], line["late"]) for line in lines
    ]
    assert killed_after >= instants["handing on"]  # those kills came after a verdict line of their run
    assert sorted(path.name for path in done.iterdir()) == sorted(f"{name}.jpg" for name in names)
    assert list(folder.iterdir()) == []
    with sqlite3.connect(plant.home / "lineqa.db") as db:  # each file captured once: one record each
        assert db.execute("SELECT COUNT(*), COUNT(DISTINCT part_id) FROM inspections").fetchone() == (parts, parts)


def test_triton_killed_mid_run_frames_are_answered_then_judged_late(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """SIGKILL the gateway's Triton while a camera streams: the frames it cannot judge are answered ERROR at
    once (the gate's answer, marked retrying), kept in the spool, sent again, and judged late once the
    gateway's supervisor has Triton back; every part ends with one verdict."""
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], 40)
    gateway, port = serving(plant)
    out = tmp_path / "verdicts.jsonl"
    agent = None
    try:
        agent = camera(plant.home, token, folder, port, out, "--fps", "4", "--retry-max-s", "2")
        wait_for_lines(out, 6)
        tritons = [p for p in psutil.Process(gateway.pid).children(recursive=True) if p.name() == "tritonserver"]
        assert tritons, "no tritonserver under the gateway"
        for triton in tritons:
            triton.kill()
        run_to_end(agent)
    finally:
        stop_both(gateway, agent)
    lines = verdict_lines(out)
    assert delivered_once(lines, [f"part{i}" for i in range(40)]) == {"lost": 0, "duplicated": 0}
    retrying = [line for line in lines if line["retrying"]]
    assert retrying and all(
        line["verdict"] == "ERROR" and line["error"]["code"] in ("MODEL_UNAVAILABLE", "MODEL_TIMEOUT")
        for line in retrying
    ), retrying
    finals = [line for line in lines if not line["retrying"]]
    assert all(line["verdict"] in ("PASS", "FAIL", "REVIEW") and line["record_id"] for line in finals)
    print(f"\nTriton killed: {len(retrying)} of 40 frames answered ERROR in time, all judged late")
    with sqlite3.connect(plant.home / "lineqa.db") as db:
        assert db.execute("SELECT COUNT(*) FROM inspections").fetchone() == (40,)
