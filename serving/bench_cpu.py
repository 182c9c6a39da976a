"""Where the CPU went during a measurement of ``lineqa bench``: this client, the gateway, its Triton process
tree and the rest of the machine, read from /proc.

On a machine with few cores the bench's processes compete for them, so frames/s alone cannot say whether the
gateway was slow or starved; these figures can.
"""

from __future__ import annotations

import os
from pathlib import Path


def _cpu_times(pids: list[int]) -> float:
    """User + system CPU seconds of processes (all their threads), from /proc; vanished ones count 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (the gateway's Triton host, the Triton server, its Python backend stubs)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _machine_busy_s() -> float:
    """CPU seconds the machine's cores were busy, or taken by the hypervisor (steal), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
    return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent between two reads by this client, the gateway process, its Triton process tree, and
    everything else on the machine ("other").

    On a machine with few cores they all compete: this says which one the cores went to, and "other" well
    above zero says something outside the benchmark took them, so the figures are not the gateway's alone.
    Linux only (/proc): elsewhere it measures nothing.
    """

    def __init__(self, gateway_pid: int | None = None) -> None:
        self.gateway_pid = gateway_pid

    def read(self) -> dict[str, float]:
        if not Path("/proc/stat").exists():
            return {}
        spent = {"client": _cpu_times([os.getpid()])}
        if self.gateway_pid is not None:
            spent["gateway"] = _cpu_times([self.gateway_pid])
            spent["triton"] = _cpu_times(_descendants(self.gateway_pid))
        return {**spent, "machine": _machine_busy_s()}

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        spent = {name: after[name] - before[name] for name in before}
        if "machine" in spent:
            machine = spent.pop("machine")
            spent["other"] = max(0.0, machine - sum(spent.values()))
        return spent
