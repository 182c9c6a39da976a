"""Crash safety (RELIABILITY.md 8): ``lineqa serve`` SIGKILLed at 20 seeded random instants while a camera
agent streams a folder of parts, and restarted each time. After the agent has sent everything again: no frame
the agent was given a verdict for is missing from the database, no part is recorded twice, every part is
judged, and SQLite's integrity check passes. Synthetic parts: the behaviour under test is durability."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from lineqa.serving.embedded_triton import free_port
from lineqa.serving.readiness import wait_until_serving
from tests.helpers.line import camera, delivered_once, make_home, run_to_end, serve, verdict_lines
from tests.helpers.processes import stop

pytestmark = pytest.mark.slow
SEED = 8
KILLS = 20
PARTS = 60


def test_gateway_sigkilled_twenty_times_loses_and_duplicates_nothing(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], PARTS)
    port = free_port()
    gateway = serve(plant.home, port)
    out = tmp_path / "verdicts.jsonl"
    agent = None
    kills: list[float] = []
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 120, process=gateway)
        agent = camera(plant.home, token, folder, port, out, "--fps", "6", "--spool-dir", str(tmp_path / "spool"),
                       "--retry-max-s", "2")  # fmt: skip
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 2.5))  # frames flow: a random instant among them
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            kills.append(time.monotonic())
            gateway = serve(plant.home, port)
            wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 120, process=gateway)
        run_to_end(agent)
    finally:
        stop(gateway)
        if agent is not None and agent.poll() is None:
            agent.kill()
    entries = verdict_lines(out)
    finals = [e for e in entries if not e["retrying"]]
    with sqlite3.connect(plant.home / "lineqa.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        records = {row[0]: row[1:] for row in db.execute("SELECT record_id, part_id, verdict FROM inspections")}
        parts_recorded = [row[0] for row in db.execute("SELECT part_id FROM inspections")]
    missing = [e for e in finals if e["record_id"] not in records]
    counts = delivered_once(entries, [f"part{i}" for i in range(PARTS)])
    print(f"\n{len(kills)} SIGKILLs of the gateway over {PARTS} parts: {len(finals)} verdicts handed on, "
          f"{len(records)} records, acknowledged but missing {len(missing)}, {counts}")  # fmt: skip
    assert len(kills) == KILLS
    assert not missing, f"acknowledged verdicts without a record: {missing[:3]}"
    assert counts == {"lost": 0, "duplicated": 0}
    assert sorted(parts_recorded) == sorted(f"part{i}" for i in range(PARTS))  # each part judged, once
