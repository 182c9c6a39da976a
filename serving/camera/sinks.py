"""Verdict outputs that need no network: the one payload every sink sends, the JSON-lines file, and the pump.

Every sink (file, MQTT, console) describes a verdict with :func:`verdict_payload`, so a PLC gateway, a log
shipper and a person reading the file all see the same fields with the same names. :class:`SinkSet` is what
the agent talks to: it hands each delivery in the spool's outbox to every sink, in order, and keeps one sink's
failure (a full disk, a broker that is down, a broken terminal) away from the others and from the stream,
counting it and trying that sink again later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timezone
from pathlib import Path
from typing import IO, Any

from google.protobuf.timestamp_pb2 import Timestamp

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import AgentStatus, Bounded, Context, Delivery, KeepsRecord, VerdictSink
from lineqa.serving.camera.spool import Spool

_logger = logging.getLogger(__name__)

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


def verdict_payload(delivery: Delivery, context: Context) -> dict[str, Any]:
    """The JSON object that describes one verdict handed on, for every sink.

    The key set is the same for every verdict (``model``, ``recipe`` and ``error`` are ``null`` when absent),
    so a consumer can read it without knowing which verdict came; times are ISO 8601 in UTC. ``retrying``
    marks a transient ERROR given as the part's answer (its verdict follows), ``late`` that verdict;
    ``delivery`` is the agent's outbox number, increasing per camera (what a restarted agent reads back).
    """
    result = delivery.result
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
        "late": delivery.late,
        "retrying": delivery.retrying,
        "delivery": delivery.id,
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


def _lines_backwards(file: IO[bytes], end: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The non-empty lines of ``file[:end]``, last first, reading ``chunk`` bytes at a time from the end."""
    position, rest = end, b""
    while position > 0:
        start = max(0, position - chunk)
        file.seek(start)
        lines = (file.read(position - start) + rest).split(b"\n")
        position, rest = start, lines[0]
        yield from (line for line in reversed(lines[1:]) if line)
    if rest:
        yield rest


def _cut_torn_line(file: IO[bytes], path: Path) -> int:
    """Cut a last line without its newline (a write cut short by a crash); the file's new size."""
    size = file.seek(0, os.SEEK_END)
    if size == 0:
        return 0
    file.seek(size - 1)
    if file.read(1) == b"\n":
        return size
    last = next(_lines_backwards(file, size))
    keep = size - len(last)
    file.truncate(keep)
    file.flush()
    os.fsync(file.fileno())
    _logger.warning("%s: cut a torn last line of %d bytes (a write cut short by a crash)", path, len(last))
    return keep


def last_delivery_in(path: Path, context: Context) -> int:
    """The ``delivery`` of this camera's last line in a JSON-lines file (0 if it has none), after cutting a
    torn last line. Reads backwards from the end, so it is quick unless other cameras wrote much since."""
    try:
        file = path.open("rb+")
    except FileNotFoundError:
        return 0
    with file:
        for line in _lines_backwards(file, _cut_torn_line(file, path)):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(entry, dict)
                and entry.get("tenant") == context.tenant
                and entry.get("camera") == context.camera
            ):
                delivery = entry.get("delivery")
                return delivery if isinstance(delivery, int) and not isinstance(delivery, bool) else 0
    return 0


class JsonLinesSink:
    """Appends one :func:`verdict_payload` per line to a file, written in one ``write`` and fsynced before
    ``emit`` returns, so a verdict written is a verdict kept even if the machine loses power a moment later.

    The file is its own record of what it holds: whenever it is opened (at the first delivery, and again after a
    failed write) it is read back (:func:`last_delivery_in`, which also cuts a torn last line), and deliveries
    it already has are skipped, so a verdict handed on again after a crash is written once. Only this camera's
    lines count as its record, but give each agent a file of its own: a line another process is writing at the
    moment of the read-back would be taken for a torn one.
    """

    name = "jsonl"

    def __init__(self, path: Path, context: Context) -> None:
        self.path = path
        self._context = context
        self._fd: int | None = None
        self._delivered = 0
        self._lock = threading.Lock()

    @property
    def delivered(self) -> int:
        with self._lock:
            return self._delivered

    def emit(self, delivery: Delivery) -> None:
        line = json.dumps(verdict_payload(delivery, self._context), ensure_ascii=False, separators=(",", ":"))
        data = (line + "\n").encode("utf-8")
        with self._lock:
            try:
                if self._fd is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._delivered = max(self._delivered, last_delivery_in(self.path, self._context))
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                if delivery.id <= self._delivered:
                    return
                written = os.write(self._fd, data)
                if written != len(data):  # a full disk mid-line: the next open cuts the torn part
                    raise OSError(f"wrote {written} of {len(data)} bytes to {self.path}")
                os.fsync(self._fd)
                self._delivered = delivery.id
            except OSError:
                self._close_file()
                raise

    def status(self, status: AgentStatus) -> None:
        """The file holds verdicts only; the status goes to the console and MQTT."""

    def close(self) -> None:
        with self._lock:
            self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # The write that failed already says why; the next emit opens (and reads back) the file again.
            with contextlib.suppress(OSError):
                os.close(fd)


class SinkSet:
    """Hands each delivery of the spool's outbox to every sink, in order; a sink that raises is logged
    (throttled) and counted, never propagated, and tried again from the same delivery at the next pump.

    Each sink has a position in the outbox, set by :meth:`attach`. A sink that keeps its own record
    (:class:`~lineqa.serving.camera.model.KeepsRecord`) starts where the spool last saw it confirm, and skips by
    its record what it already holds: exactly once across crashes. Any other sink (the console) starts after
    the newest delivery: at most once (a verdict a crash left unshown is not shown after the restart).
    :meth:`save` records what each sink confirmed, which lets the spool prune the outbox. ``failures`` (per
    sink: the calls that raised, plus deliveries the outbox pruned before the sink took them) is what ``status``
    puts in ``AgentStatus.sink_failures`` on the way to the sinks.
    """

    name = "sinks"

    def __init__(self, sinks: Iterable[VerdictSink], logger: logging.Logger, *, batch: int = 256) -> None:
        self._sinks = list(sinks)
        names = [sink.name for sink in self._sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}: failures are counted per name")
        self._throttle = LogThrottle(logger)
        self._batch = batch
        self._lock = threading.Lock()  # failure counts
        self._pumping = threading.Lock()  # positions; one pump at a time
        self._failures = dict.fromkeys(names, 0)
        self._positions: dict[str, int] = {}
        self._spool: Spool | None = None

    @property
    def failures(self) -> dict[str, int]:
        with self._lock:
            return dict(self._failures)

    def attach(self, spool: Spool) -> None:
        """Take deliveries from ``spool``'s outbox, each sink from its position (see the class)."""
        with self._pumping:
            self._spool = spool
            newest = spool.last_delivery
            for sink in self._sinks:
                saved = spool.cursor(sink.name) if isinstance(sink, KeepsRecord) else None
                self._positions[sink.name] = newest if saved is None else min(saved, newest)
            # Recorded at once: a sink new to this spool must find its start again if the agent dies before
            # the first save, or what it was never handed would be taken for what it had.
            spool.save_cursors(self._positions)

    def pump(self) -> None:
        """Hand every sink the deliveries it has not had yet (as many as a bounded sink has room for)."""
        with self._pumping:
            if self._spool is None:
                raise RuntimeError("attach the spool before pumping")
            for sink in self._sinks:
                self._pump(self._spool, sink)

    def _pump(self, spool: Spool, sink: VerdictSink) -> None:
        position = self._positions[sink.name]
        while True:
            limit = min(self._batch, sink.room) if isinstance(sink, Bounded) else self._batch
            deliveries = spool.deliveries(position, limit) if limit > 0 else []
            if not deliveries:
                return
            if deliveries[0].id > position + 1:
                lost = deliveries[0].id - position - 1
                self._failed(sink.name, lost, f"{lost} deliveries pruned from the outbox before it took them")
            for delivery in deliveries:
                if not self._call(sink.name, sink.emit, delivery):
                    return
                position = self._positions[sink.name] = delivery.id

    def confirmed(self) -> dict[str, int]:
        """Per sink, the newest delivery it holds for certain (a sink without a record: the newest handed)."""
        with self._pumping:
            return {
                sink.name: sink.delivered if isinstance(sink, KeepsRecord) else self._positions[sink.name]
                for sink in self._sinks
                if sink.name in self._positions
            }

    def save(self) -> None:
        """Record what each sink confirmed in the spool (which prunes what they all have)."""
        if self._spool is not None:
            self._spool.save_cursors(self.confirmed())

    def status(self, status: AgentStatus) -> None:
        """Hands on the status with ``sink_failures`` filled in, so the console and MQTT show them."""
        status = dataclasses.replace(status, sink_failures=self.failures)
        for sink in self._sinks:
            self._call(sink.name, sink.status, status)

    def close(self) -> None:
        """Close every sink (MQTT waits a moment for the broker's acknowledgements), then save positions."""
        for sink in self._sinks:
            self._call(sink.name, sink.close)
        self.save()

    def _failed(self, name: str, count: int, what: str, exc: BaseException | None = None) -> None:
        with self._lock:
            self._failures[name] += count
            total = self._failures[name]
        self._throttle.warning(name, "verdict sink %r: %s (%d failures so far)", name, what, total, exc_info=exc)

    def _call(self, name: str, method: Callable[..., None], *args: object) -> bool:
        try:
            method(*args)
        except Exception as exc:
            self._failed(name, 1, f"{method.__name__} failed: {exc}", exc)
            return False
        return True
