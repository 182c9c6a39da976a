"""A line for end-to-end tests: a lineqa home with a model, a recipe and a camera; ``lineqa serve`` on it;
``lineqa camera`` processes streaming a folder of synthetic parts; reading what they handed on."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2

from lineqa.datasets.synth import Surface, generate_part
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import wait_until_serving
from tests.helpers.processes import stop


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
    """``lineqa serve`` on ``home``; its output goes to ``<home>/../gateway-<port>.log`` (appended)."""
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--home", str(home), "--port", str(port), "--metrics-port", "0"]
    with (home.parent / f"gateway-{port}.log").open("a") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)


def serving(plant: LocalPlant) -> tuple[subprocess.Popen[str], int]:
    """A gateway on ``plant``'s home, SERVING (its log beside the home), and its port."""
    port = free_port()
    gateway = serve(plant.home, port)
    log = plant.home.parent / f"gateway-{port}.log"
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 90, process=gateway, log=log)
    except BaseException:
        stop(gateway)
        raise
    return gateway, port


def run_to_end(agent: subprocess.Popen[str]) -> str:
    """The agent's output once it has judged everything and exited cleanly."""
    log, _ = agent.communicate(timeout=300)
    assert agent.returncode == 0, log[-3000:]
    return log


def stop_both(gateway: subprocess.Popen[str], agent: subprocess.Popen[str] | None) -> None:
    stop(gateway)
    if agent is not None and agent.poll() is None:
        agent.kill()


def wait_for_lines(out: Path, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while line_count(out) < count and time.monotonic() < deadline:
        time.sleep(0.1)


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


def delivered_once(entries: list[dict[str, Any]], parts: list[str]) -> dict[str, int]:
    """What an output got, against the parts of the line: every part's first answer once, in sequence order;
    exactly one final verdict per (camera, sequence), late after an ERROR marked retrying (and only then)."""
    answers = [entry["sequence"] for entry in entries if not entry["late"]]
    assert answers == sorted(answers), "answers out of sequence order"
    finals = [entry for entry in entries if not entry["retrying"]]
    keys = Counter((entry["camera"], entry["sequence"]) for entry in finals)
    per_part = Counter(entry["part_id"] for entry in finals)
    retried = {entry["sequence"] for entry in entries if entry["retrying"]}
    assert retried == {entry["sequence"] for entry in finals if entry["late"]}, "a late verdict without its answer"
    assert len(answers) == len(set(answers)), "a part answered twice"
    return {
        "lost": sum(1 for part in parts if per_part[part] == 0),
        "duplicated": sum(count - 1 for count in keys.values()) + sum(count - 1 for count in per_part.values()),
    }


def line_count(out: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return out.read_bytes().count(b"\n")
    return 0
