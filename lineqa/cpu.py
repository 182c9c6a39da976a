"""The CPU cores a process may use, for whatever sizes its threads by them: CPU training, the benchmarks'
baselines and their side-by-side runs."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` can make fewer than the
    machine's), not the machine's count: a thread per usable core keeps every one busy without oversubscribing."""
    return len(os.sched_getaffinity(0))
