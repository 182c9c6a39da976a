"""Progress for long work, on stderr: a bar redrawn in place on a terminal, a line every few seconds
otherwise (CI logs, files), so a long import or check never looks hung and never floods a log."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

ProgressFn = Callable[[int, int], None]


class ProgressBar:
    """Call with (done, total) as work advances; ``done == total`` finishes the line."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 5.0, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.width = width
        self.started = time.monotonic()
        self.last = -float("inf")
        self.tty = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self.last < (0.1 if self.tty else self.every_s):
            return
        self.last = now
        share = done / total if total else 1.0
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label} {done}/{total} ({share:.0%}, {rate:.1f}/s, {elapsed:.0f} s)"
        if self.tty:
            filled = int(share * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {rate:.1f}/s" + ("\n" if finished else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
