"""What the parts of the camera agent hand each other: captured frames, verdicts handed on, agent status.

Sources and triggers produce :class:`Capture` objects (encoded image bytes plus what is known of the part);
the agent gives each a durable sequence number, streams it to the gateway and commits each verdict it hands
on to the spool's outbox as a :class:`Delivery`, from which every verdict sink (:class:`VerdictSink`) gets it.
A sink may fail without affecting the others or the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb


@dataclass(frozen=True)
class CapturedFile:
    """A file of a hot folder as it was when captured: its path relative to the folder, size and mtime. A file
    rewritten under the same name (another size or mtime) is another file."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Capture:
    """One frame to judge. ``data`` is encoded as ``encoding`` (a ``pb.ImageEncoding`` value: JPEG or PNG
    for files and for frames a source encodes; raw frames also give ``width``/``height``); ``origin`` says
    where it came from (file name, stream URL and frame index) for logs; ``file`` is set by a hot folder, whose
    ledger the spool keeps."""

    data: bytes
    encoding: int
    part_id: str
    captured_at: datetime
    origin: str
    width: int = 0
    height: int = 0
    file: CapturedFile | None = None


class FrameSource(Protocol):
    """A blocking iterator of captures, read in a worker thread. A finite source (a folder, a video file) ends;
    a live one (RTSP, USB, a watched hot folder) never ends until closed."""

    def captures(self) -> Iterator[Capture]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """Who the agent is, for verdict payloads and topics."""

    tenant: str
    line: str
    camera: str


@dataclass(frozen=True)
class Delivery:
    """One verdict handed on. ``id`` numbers the spool's outbox: increasing, never reused, so an output that
    keeps its own record of what it holds can tell what it already has.

    ``retrying``: a transient ERROR (model unavailable or slow, storage, overload) given as the part's answer
    in time for the gate; the frame stays spooled and its verdict follows. ``late``: that verdict, judged on a
    retry after a transient ERROR.
    """

    id: int
    result: pb.InspectionResult
    late: bool = False
    retrying: bool = False


@dataclass
class AgentStatus:
    """What the console and the retained MQTT status topic show."""

    state: str  # "connecting", "streaming", "spooling" (gateway unreachable), "stopped"
    sent: int = 0
    judged: int = 0
    spooled: int = 0
    dropped: int = 0
    retrying: int = 0  # frames answered with a transient ERROR, waiting in the spool to be judged
    late: int = 0  # verdicts handed on late (judged on a retry)
    verdicts: dict[str, int] = field(default_factory=dict)  # verdicts handed on, by word
    errors: dict[str, int] = field(default_factory=dict)  # ERROR results received, by error code
    rate_fps: float = 0.0
    latency_ms_p50: float = 0.0
    last_defects: list[str] = field(default_factory=list)
    sink_failures: dict[str, int] = field(default_factory=dict)


class VerdictSink(Protocol):
    """Where verdicts go. ``emit`` is called once per delivery, in outbox order (sequence order per camera,
    except late verdicts, which come when they are judged)."""

    name: str

    def emit(self, delivery: Delivery) -> None: ...

    def status(self, status: AgentStatus) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class KeepsRecord(Protocol):
    """An output that knows what it already holds (the JSON-lines file reads itself back, the MQTT sink reads
    the broker's retained last verdict). After a restart it is handed again every delivery a crash may have
    left unconfirmed, and skips those it has: exactly once. An output without a record (the console) is only
    handed deliveries made after it started: at most once."""

    @property
    def delivered(self) -> int:
        """The newest delivery id this output holds for certain (0 when none is known yet)."""
        ...


@runtime_checkable
class Bounded(Protocol):
    """An output that buffers deliveries (MQTT while the broker is away): it is handed at most ``room`` more;
    the rest wait in the spool's outbox."""

    @property
    def room(self) -> int: ...
