"""Steps the training benchmarks share: run ``lineqa`` as a user would, train runs side by side, and lay out
part of DeepPCB in its own layout for an importer to read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lineqa.cpu import usable_cores


def experiment_home(deeppcb_root: Path) -> Path:
    """The experiment's lineqa home (``LINEQA_HOME``, which must be new or empty: an experiment never mixes
    with earlier data), once DeepPCB is known to be at ``deeppcb_root``; otherwise the benchmark stops, saying
    why."""
    home = Path(os.environ.get("LINEQA_HOME", ""))
    if not os.environ.get("LINEQA_HOME") or (home.exists() and any(home.iterdir())):
        sys.exit("set LINEQA_HOME to a new or empty folder for the experiment")
    if not deeppcb_root.is_dir():
        sys.exit(f"DeepPCB not found at {deeppcb_root}: this benchmark needs ../shared/datasets beside the repo")
    return home


def lineqa(*args: str) -> str:
    """Run a lineqa command as a user would; its output is shown, and a failure stops the benchmark."""
    print("$ lineqa " + " ".join(args), flush=True)
    done = subprocess.run([sys.executable, "-m", "lineqa.cli", *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"lineqa {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def train_at_once(commands: Sequence[Sequence[str]], log_folder: Path) -> None:
    """Run the ``lineqa train`` commands side by side, each run's output in ``<log_folder>/<n>.log``; a failure
    stops the benchmark. Each run trains with an equal share of the usable cores (``--threads``; alone, a run
    on a CPU would use them all), so the runs get the same machine and share whatever else it is doing alike."""
    log_folder.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, usable_cores() // len(commands)))
    running = []
    for number, args in enumerate(commands):
        print("$ lineqa " + " ".join([*args, "--threads", threads]), flush=True)
        log = (log_folder / f"{number}.log").open("w")
        command = [sys.executable, "-m", "lineqa.cli", *args, "--threads", threads]
        running.append((args, log, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)))
    failed = [(args, log.name) for args, log, process in running if process.wait()]
    if failed:
        sys.exit("\n".join(f"lineqa {' '.join(args)} failed: see {name}" for args, name in failed))


def deeppcb_lines(root: Path) -> list[str]:
    """DeepPCB's ``trainval.txt`` lines: ``<board path without suffix> <annotation path>``."""
    return [line for line in (root / "trainval.txt").read_text().splitlines() if line.strip()]


def deeppcb_subset(root: Path, lines: Sequence[str], out: Path) -> Path:
    """The boards of ``lines`` (image, template, annotation) copied under ``out`` in DeepPCB's own layout, with
    their own ``trainval.txt``: what ``lineqa datasets import`` reads."""
    for line in lines:
        listed, annotation = line.split()
        stem = Path(listed)
        for relative in (
            stem.with_name(f"{stem.stem}_test.jpg"),
            stem.with_name(f"{stem.stem}_temp.jpg"),
            Path(annotation),
        ):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, out / relative)
    (out / "trainval.txt").write_text("\n".join(lines) + "\n")
    return out
