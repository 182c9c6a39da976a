"""The operator's view of a running camera agent: a live panel on a terminal, a periodic line in a log.

On a terminal (rich's Live view, redrawn four times a second) the operator sees at a glance whether the
camera streams, how fast and how slow, what the verdicts are and which defects were found last. Without one
(systemd, ``docker logs``, a pipe) a redrawn panel would be noise, so a plain one-line summary is printed
every ``plain_interval_s`` instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from lineqa.serving.camera.model import AgentStatus, Context, Delivery
from lineqa.serving.camera.sinks import verdict_label

_VERDICT_STYLES = {"PASS": "green", "FAIL": "bold red", "REVIEW": "yellow", "ERROR": "magenta"}
_LAST_DEFECTS = 5


def _describe(delivery: Delivery) -> str:
    result = delivery.result
    part = result.frame.part_id or f"#{result.frame.sequence}"
    defects = ", ".join(f"{defect.class_name} {defect.confidence:.2f}" for defect in result.defects)
    return f"{part} {verdict_label(result)}{' (late)' if delivery.late else ''}: {defects}"


class ConsoleSink:
    """A :class:`~lineqa.serving.camera.model.VerdictSink` for people: ``emit`` counts verdicts and remembers the last
    defects (the counts are the console's own, so they are current between status updates); ``status``
    brings state, rate, latency, retries and sink failures; the view shows both. It keeps no record, so it
    shows each verdict at most once: one that a crash left unshown is not shown after the restart."""

    name = "console"

    def __init__(self, context: Context, console: Console | None = None, *, plain_interval_s: float = 10.0) -> None:
        self._context = context
        self._console = console if console is not None else Console()
        self._plain_interval_s = plain_interval_s
        self._lock = threading.Lock()
        self._status = AgentStatus(state="connecting")
        self._verdicts = dict.fromkeys(_VERDICT_STYLES, 0)
        self._last_defects: deque[str] = deque(maxlen=_LAST_DEFECTS)
        self._printed_at: float | None = None
        self._live: Live | None = None
        if self._console.is_terminal:
            self._live = Live(console=self._console, get_renderable=self._render, refresh_per_second=4)
            self._live.start()

    def emit(self, delivery: Delivery) -> None:
        with self._lock:
            self._verdicts[verdict_label(delivery.result)] += 1
            if delivery.result.defects:
                self._last_defects.appendleft(_describe(delivery))
        self._print_if_due()

    def status(self, status: AgentStatus) -> None:
        with self._lock:
            self._status = status
        if self._live is not None:
            self._live.refresh()
        self._print_if_due()

    def close(self) -> None:
        """Leaves the final view (or line) on the screen."""
        if self._live is not None:
            self._live.stop()
        else:
            self._console.out(self.summary(), highlight=False)

    def summary(self) -> str:
        """One line with everything the panel shows, for logs."""
        with self._lock:
            status, verdicts, last = self._status, dict(self._verdicts), list(self._last_defects)
        counts = " ".join(f"{verdict} {count}" for verdict, count in verdicts.items())
        line = (
            f"camera {self._context.tenant}/{self._context.line}/{self._context.camera} {status.state}: "
            f"{status.rate_fps:.1f} frames/s, p50 {status.latency_ms_p50:.0f} ms, {counts}"
        )
        if status.retrying or status.late:
            line += f"; retrying {status.retrying}, late {status.late}"
        if last:
            line += f"; last defects {last[0]}"
        failing = {name: count for name, count in status.sink_failures.items() if count}
        if failing:
            line += "; sink failures " + ", ".join(f"{name} {count}" for name, count in failing.items())
        return line

    def _print_if_due(self) -> None:
        if self._live is not None:
            return
        now = time.monotonic()
        with self._lock:
            if self._printed_at is not None and now - self._printed_at < self._plain_interval_s:
                return
            self._printed_at = now
        self._console.out(self.summary(), highlight=False)

    def _render(self) -> RenderableType:
        with self._lock:
            status, verdicts, last = self._status, dict(self._verdicts), list(self._last_defects)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("state", status.state)
        table.add_row("rate", f"{status.rate_fps:.1f} frames/s")
        table.add_row("latency p50", f"{status.latency_ms_p50:.0f} ms")
        table.add_row(
            "frames", f"sent {status.sent}  judged {status.judged}  spooled {status.spooled}  dropped {status.dropped}"
        )
        counts = Text("  ").join(
            Text(f"{verdict} {count}", style=_VERDICT_STYLES[verdict]) for verdict, count in verdicts.items()
        )
        table.add_row("verdicts", counts)
        table.add_row("retries", f"waiting {status.retrying}  judged late {status.late}")
        errors = ", ".join(f"{code} {count}" for code, count in sorted(status.errors.items()))
        table.add_row("errors", errors or "none")
        table.add_row("last defects", "\n".join(last) if last else "none")
        failing = {name: count for name, count in status.sink_failures.items() if count}
        table.add_row(
            "sink failures",
            Text(", ".join(f"{name} {count}" for name, count in failing.items()), style="red") if failing else "none",
        )
        context = self._context
        return Panel(table, title=f"lineqa camera {context.tenant}/{context.line}/{context.camera}", expand=False)
