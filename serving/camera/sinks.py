"""Verdict outputs that need no network: the one payload every sink sends, the JSON-lines file, and the fan-out.

Every sink (file, MQTT, console) describes a verdict with :func:`verdict_payload`, so a PLC gateway, a log
shipper and a person reading the file all see the same fields with the same names. :class:`SinkSet` is what
the agent talks to: it hands each verdict to every sink and keeps one sink's failure (a full disk, a broker
that is down, a broken terminal) away from the others and from the stream, counting it instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timezone
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from google.protobuf.timestamp_pb2 import Timestamp

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import AgentStatus, Context, VerdictSink

# A PLC acts on exactly these four words. An unset verdict (a gateway bug) is reported as ERROR, because the
# contract says a frame that was not judged must never be taken for a PASS.
_VERDICTS = {pb.VERDICT_PASS: "PASS", pb.VERDICT_FAIL: "FAIL", pb.VERDICT_REVIEW: "REVIEW", pb.VERDICT_ERROR: "ERROR"}


def verdict_label(result: pb.InspectionResult) -> str:
    """PASS, FAIL, REVIEW or ERROR; anything else counts as ERROR (never as PASS)."""
    return _VERDICTS.get(result.verdict, "ERROR")


def _iso(timestamp: Timestamp) -> str | None:
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    moment = timestamp.ToDatetime(tzinfo=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _defect(defect: pb.Defect) -> dict[str, Any]:
    # float32 on the wire: rounded so that 0.9 reads as 0.9, not 0.8999999761581421.
    box = defect.box
    entry: dict[str, Any] = {
        "class": defect.class_name,
        "confidence": round(defect.confidence, 4),
        "box": [round(box.x1, 2), round(box.y1, 2), round(box.x2, 2), round(box.y2, 2)],
        "area_px": round(defect.area_px, 2),
    }
    if defect.HasField("area_mm2"):
        entry["area_mm2"] = round(defect.area_mm2, 4)
    entry["disposition"] = pb.DefectDisposition.Name(defect.disposition).removeprefix("DEFECT_DISPOSITION_")
    return entry


def _error(result: pb.InspectionResult) -> dict[str, str] | None:
    if verdict_label(result) != "ERROR":
        return None
    if result.verdict != pb.VERDICT_ERROR:
        return {"code": "UNSPECIFIED", "message": "the gateway returned no verdict for this frame"}
    return {
        "code": pb.ErrorCode.Name(result.error.code).removeprefix("ERROR_CODE_"),
        "message": result.error.message,
    }


def verdict_payload(result: pb.InspectionResult, context: Context) -> dict[str, Any]:
    """The JSON object that describes one verdict, for every sink.

    The key set is the same for every verdict (``model``, ``recipe`` and ``error`` are ``null`` when absent),
    so a consumer can read it without knowing which verdict came; times are ISO 8601 in UTC.
    """
    frame = result.frame
    return {
        "tenant": context.tenant,
        "line": context.line,
        "camera": context.camera,
        "part_id": frame.part_id,
        "sequence": frame.sequence,
        "verdict": verdict_label(result),
        "reasons": list(result.reasons),
        "record_id": result.record_id,
        "defects": [_defect(defect) for defect in result.defects],
        "model": {"name": result.model.name, "version": result.model.version} if result.model.name else None,
        "recipe": {"id": result.recipe.id, "version": result.recipe.version} if result.recipe.id else None,
        "error": _error(result),
        "capture_time": _iso(frame.capture_time),
        "receive_time": _iso(result.receive_time),
        "replay": result.replay,
    }


class LogThrottle:
    """Logs the first warning per key at once, then at most one per ``interval_s`` with the number held back.

    A sink that fails on every frame (dozens a second) must neither flood the log nor go quiet after the first
    message: the operator sees that it is still failing and how often.
    """

    def __init__(
        self, logger: logging.Logger, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            message += " (%d more like this since the last report)"
            args = (*args, held)
        self._logger.warning(message, *args, exc_info=exc_info)


class JsonLinesSink:
    """Appends one :func:`verdict_payload` per line to a file, flushed and fsynced before ``emit`` returns.

    A verdict written is a verdict kept, even if the machine loses power a moment later. The file is opened on
    the first verdict and again after a failed write, so a disk that was full or unmounted for a while costs
    the verdicts of that while (counted by :class:`SinkSet`), not the rest of the run.
    """

    name = "jsonl"

    def __init__(self, path: Path, context: Context) -> None:
        self.path = path
        self._context = context
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def emit(self, result: pb.InspectionResult) -> None:
        line = json.dumps(verdict_payload(result, self._context), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line + "\n")
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                self._close_file()
                raise

    def status(self, status: AgentStatus) -> None:
        """The file holds verdicts only; the status goes to the console and MQTT."""

    def close(self) -> None:
        with self._lock:
            self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            # The write that failed already says why; the next emit opens the file again.
            with contextlib.suppress(OSError):
                file.close()


@runtime_checkable
class CountsDrops(Protocol):
    """A sink that does not raise when it cannot deliver (MQTT while the broker is down) but counts instead."""

    @property
    def dropped(self) -> int: ...


class SinkSet:
    """Hands every call to every sink; a sink that raises is logged (throttled) and counted, never propagated.

    ``failures`` (per sink name: the calls that raised plus the verdicts the sink itself reports as dropped) is
    what ``status`` puts in ``AgentStatus.sink_failures`` on the way to the sinks.
    """

    name = "sinks"

    def __init__(self, sinks: Iterable[VerdictSink], logger: logging.Logger) -> None:
        self._sinks = list(sinks)
        names = [sink.name for sink in self._sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}: failures are counted per name")
        self._throttle = LogThrottle(logger)
        self._lock = threading.Lock()
        self._raised = dict.fromkeys(names, 0)

    @property
    def failures(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._raised)
        for sink in self._sinks:
            if isinstance(sink, CountsDrops):
                counts[sink.name] += sink.dropped
        return counts

    def emit(self, result: pb.InspectionResult) -> None:
        for sink in self._sinks:
            self._call(sink.name, sink.emit, result)

    def status(self, status: AgentStatus) -> None:
        """Hands on the status with ``sink_failures`` filled in, so the console and MQTT show them."""
        status = dataclasses.replace(status, sink_failures=self.failures)
        for sink in self._sinks:
            self._call(sink.name, sink.status, status)

    def close(self) -> None:
        for sink in self._sinks:
            self._call(sink.name, sink.close)

    def _call(self, name: str, method: Callable[..., None], *args: object) -> None:
        try:
            method(*args)
        except Exception as exc:
            with self._lock:
                self._raised[name] += 1
                count = self._raised[name]
            self._throttle.warning(
                name,
                "verdict sink %r failed in %s (%d failures so far): %s",
                name,
                method.__name__,
                count,
                exc,
                exc_info=exc,
            )
