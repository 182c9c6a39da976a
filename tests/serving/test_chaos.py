"""Chaos (RELIABILITY.md 22): a seeded schedule of faults while a camera agent streams a folder of parts to
``lineqa serve`` through a TCP proxy: Triton (the loopback stand-in) stalls, answers with the wrong shape or
NaN, refuses; the proxy resets and stalls the connections; the gateway's home, on a small file system, fills up
and is freed. Then the faults stop. No PASS without a model result (every good answer of the stand-in is a
confident defect: a PASS anywhere is a fault taken for a result), no acknowledged frame lost, none duplicated,
the gateway never crashed, and every part is finally judged."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lineqa.serving.embedded_triton import free_port
from lineqa.serving.readiness import wait_until_serving
from tests.helpers.faults import StandInTriton, TritonMode, chaos_schedule, fill, small_filesystem
from tests.helpers.line import camera, delivered_once, make_home, run_to_end, verdict_lines
from tests.helpers.processes import stop
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow
SEED = 22
PARTS = 50
CHAOS_S = 40.0


def test_a_seeded_schedule_of_faults_loses_nothing_and_passes_nothing(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    faults = chaos_schedule(SEED, CHAOS_S)
    triton = StandInTriton().start()
    with small_filesystem(tmp_path / "home", 64) as home:
        plant, token, folder = make_home(tmp_path, tiny_models["yolo11n"], PARTS)  # home is tmp_path / "home"
        assert plant.home == home
        port = free_port()
        command = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port),
                   "--metrics-port", "0", "--triton-url", triton.url]  # fmt: skip
        log = (tmp_path / "gateway.log").open("w")
        gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        proxy = TcpProxy(("127.0.0.1", port))
        out = tmp_path / "verdicts.jsonl"
        agent = None
        done: Counter[str] = Counter()
        filler: Path | None = None
        try:
            wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 120, process=gateway)
            # Parts are captured over the whole schedule, so the faults meet first attempts, not only retries.
            agent = camera(plant.home, token, folder, proxy.port, out, "--fps", str(PARTS / CHAOS_S), "--spool-dir",
                           str(tmp_path / "spool"), "--retry-max-s", "2", "--keepalive-s", "2")  # fmt: skip
            began = time.monotonic()
            for fault in faults:
                time.sleep(max(0.0, began + fault.at_s - time.monotonic()))
                done[fault.kind] += 1
                if fault.kind in {m.value for m in TritonMode}:
                    triton.set_mode(TritonMode(fault.kind))
                elif fault.kind == "proxy-reset":
                    proxy.reset()
                elif fault.kind == "proxy-stall":
                    proxy.stall()
                elif fault.kind == "disk-full":
                    filler = fill(home)
                elif fault.kind == "disk-free" and filler is not None:
                    filler.unlink(missing_ok=True)
                    filler = None
                assert gateway.poll() is None, f"the gateway died at {fault}"
            run_to_end(agent)  # the faults have stopped: every part must be judged
            alive = gateway.poll() is None
        finally:
            if agent is not None and agent.poll() is None:
                agent.kill()
            stop(gateway)
            proxy.close()
            triton.stop()
            log.close()
        with sqlite3.connect(home / "lineqa.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            records = dict(db.execute("SELECT record_id, verdict FROM inspections").fetchall())
            attempts = Counter(code for (code,) in db.execute("SELECT error_code FROM inspection_attempts"))
    entries = verdict_lines(out)
    finals = [e for e in entries if not e["retrying"]]
    counts = delivered_once(entries, [f"part{i}" for i in range(PARTS)])
    verdicts = Counter(str(e["verdict"]) for e in finals)
    print(f"\nchaos, seed {SEED}: faults {dict(done)}; stand-in Triton calls {dict(triton.answered)}; "
          f"{len(finals)} final verdicts {dict(verdicts)}; recorded attempts {dict(attempts)}; {counts}")  # fmt: skip
    assert alive, "the gateway crashed"
    assert verdicts["PASS"] == 0, "a part was passed without a model result"
    assert counts == {"lost": 0, "duplicated": 0}
    assert set(verdicts) == {"FAIL"}, verdicts  # every part finally judged (by a good answer)
    assert all(records.get(str(e["record_id"])) == "FAIL" for e in finals)
    assert sum(done.values()) >= 10 and triton.answered["answer"] >= PARTS
