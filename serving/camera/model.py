"""What the parts of the camera agent hand each other: captured frames, judged verdicts, agent status.

Sources and triggers produce :class:`Capture` objects (encoded image bytes plus what is known of the part);
the agent gives each a durable sequence number, streams it to the gateway and hands the result to the
verdict sinks (:class:`VerdictSink`), each of which may fail without affecting the others or the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb


@dataclass(frozen=True)
class Capture:
    """One frame to judge. ``data`` is encoded as ``encoding`` (a ``pb.ImageEncoding`` value: JPEG or PNG
    for files and for frames a source encodes; raw frames also give ``width``/``height``); ``origin`` says
    where it came from (file name, stream URL and frame index) for logs."""

    data: bytes
    encoding: int
    part_id: str
    captured_at: datetime
    origin: str
    width: int = 0
    height: int = 0


class FrameSource(Protocol):
    """A blocking iterator of captures, read in a worker thread. A finite source (a folder without loop, a
    video file) ends; a live one (RTSP, USB) reconnects by itself and never ends until closed."""

    def captures(self) -> Iterator[Capture]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Context:
    """Who the agent is, for verdict payloads and topics."""

    tenant: str
    line: str
    camera: str


@dataclass
class AgentStatus:
    """What the console and the retained MQTT status topic show."""

    state: str  # "connecting", "streaming", "spooling" (gateway unreachable), "stopped"
    sent: int = 0
    judged: int = 0
    spooled: int = 0
    dropped: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    rate_fps: float = 0.0
    latency_ms_p50: float = 0.0
    last_defects: list[str] = field(default_factory=list)
    sink_failures: dict[str, int] = field(default_factory=dict)


class VerdictSink(Protocol):
    """Where a verdict goes. ``emit`` is called once per judged frame, in sequence order per camera."""

    name: str

    def emit(self, result: pb.InspectionResult) -> None: ...

    def status(self, status: AgentStatus) -> None: ...

    def close(self) -> None: ...
