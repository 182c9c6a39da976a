"""Child processes that die with the gateway, even when the gateway is killed with SIGKILL.

A child started through ``setpriv --pdeathsig SIG`` gets SIG from the kernel when its parent dies. The
kernel sends it when the parent *thread* that forked the child ends, not the process, so every such child is
forked by one thread that lives as long as the process (:class:`_Spawner`). Each child leads its own process
group, so stopping it reaches whatever it started (Triton's backend stubs) with one ``killpg``.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

SETPRIV = shutil.which("setpriv")


class _Spawner:
    """The one thread that forks parent-death-signalled children; it never returns before the process ends."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[dict[str, Any], Future[subprocess.Popen[bytes]]]] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="lineqa-spawner", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            arguments, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(**arguments))
            except BaseException as exc:  # handed to the caller, who raises it
                future.set_exception(exc)

    def popen(self, **arguments: Any) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((arguments, future))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def spawn_bound(
    command: Sequence[str], *, env: Mapping[str, str], output: IO[bytes], death_signal: str = "KILL"
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group; the kernel sends it ``death_signal`` if this process dies."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    if SETPRIV is None:
        logger.warning("setpriv (util-linux) not found: %s may outlive a killed gateway", command[0])
        full = list(command)
    else:
        full = [SETPRIV, "--pdeathsig", death_signal, "--", *command]
    return _spawner.popen(
        args=full, env=dict(env), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child, wait up to ``grace_s``, then SIGKILL its whole process group (its own children too)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("process %d did not stop within %.0f s: killing it", process.pid, grace_s)
    kill_group(process.pid)
    process.wait()


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in a process group (a no-op when none is)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies of the group count as alive for killpg; only live members matter.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False
