"""The verdict payload, the JSON-lines file (its own record of what it holds, a torn last line cut), the
console view, and the pump from the spool's outbox that keeps sinks independent and each delivery once."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.console import ConsoleSink
from lineqa.serving.camera.model import AgentStatus, Capture, Context, Delivery
from lineqa.serving.camera.sinks import JsonLinesSink, LogThrottle, SinkSet, last_delivery_in, verdict_payload
from lineqa.serving.camera.spool import Spool

CONTEXT = Context(tenant="acme", line="line-1", camera="cam-1")
CAPTURED = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)


def result(verdict: pb.Verdict, part_id: str = "P-1", sequence: int = 7, **fields: Any) -> pb.InspectionResult:
    message = pb.InspectionResult(verdict=verdict, **fields)
    message.frame.camera_id = CONTEXT.camera
    message.frame.line_id = CONTEXT.line
    message.frame.part_id = part_id
    message.frame.sequence = sequence
    message.frame.capture_time.FromDatetime(CAPTURED)
    return message


def judged(verdict: pb.Verdict, defects: list[pb.Defect], reasons: list[str]) -> pb.InspectionResult:
    message = result(
        verdict,
        defects=defects,
        reasons=reasons,
        record_id="rec-42",
        model=pb.ModelRef(name="pcb-yolo", version=3),
        recipe=pb.RecipeRef(id="pcb-top", version="ab" * 32),
    )
    message.receive_time.FromDatetime(datetime(2025, 3, 4, 5, 6, 8, tzinfo=timezone.utc))
    return message


SCRATCH = pb.Defect(
    class_name="scratch",
    class_id=1,
    confidence=0.9,
    box=pb.BoundingBox(x1=10, y1=20.5, x2=30, y2=40),
    area_px=390.0,
    area_mm2=0.39,
    disposition=pb.DEFECT_DISPOSITION_DEFECT,
)


def delivered(message: pb.InspectionResult, number: int = 1, **flags: bool) -> Delivery:
    return Delivery(number, message, **flags)


def test_pass_payload_has_every_key_and_no_error() -> None:
    payload = verdict_payload(delivered(judged(pb.VERDICT_PASS, [], ["no defect found"]), 41), CONTEXT)

    assert payload == {
        "tenant": "acme",
        "line": "line-1",
        "camera": "cam-1",
        "part_id": "P-1",
        "sequence": 7,
        "verdict": "PASS",
        "reasons": ["no defect found"],
        "record_id": "rec-42",
        "defects": [],
        "model": {"name": "pcb-yolo", "version": 3},
        "recipe": {"id": "pcb-top", "version": "ab" * 32},
        "error": None,
        "capture_time": "2025-03-04T05:06:07.123456Z",
        "receive_time": "2025-03-04T05:06:08.000000Z",
        "replay": False,
        "late": False,
        "retrying": False,
        "delivery": 41,
    }
    assert json.loads(json.dumps(payload)) == payload


def test_fail_payload_lists_defects_with_box_areas_and_disposition() -> None:
    unscaled = pb.Defect(
        class_name="dent",
        confidence=0.5,
        box=pb.BoundingBox(x1=1, y1=2, x2=3, y2=4),
        area_px=4.0,
        disposition=pb.DEFECT_DISPOSITION_REVIEW,
    )
    payload = verdict_payload(
        delivered(judged(pb.VERDICT_FAIL, [SCRATCH, unscaled], ["scratch 0.90 >= 0.50"])), CONTEXT
    )

    assert payload["verdict"] == "FAIL"
    assert payload["reasons"] == ["scratch 0.90 >= 0.50"]
    assert payload["defects"] == [
        {
            "class": "scratch",
            "confidence": 0.9,
            "box": [10.0, 20.5, 30.0, 40.0],
            "area_px": 390.0,
            "area_mm2": 0.39,
            "disposition": "DEFECT",
        },
        # No scale in the recipe: no area_mm2 at all rather than a misleading 0.
        {"class": "dent", "confidence": 0.5, "box": [1.0, 2.0, 3.0, 4.0], "area_px": 4.0, "disposition": "REVIEW"},
    ]


def test_error_payload_names_the_error_and_has_no_model_or_recipe() -> None:
    error = pb.InspectionError(code=pb.ERROR_CODE_MODEL_UNAVAILABLE, message="model server down; retry later")
    payload = verdict_payload(delivered(result(pb.VERDICT_ERROR, error=error, replay=True), retrying=True), CONTEXT)

    assert payload["verdict"] == "ERROR"
    assert (payload["retrying"], payload["late"]) == (True, False)
    assert payload["error"] == {"code": "MODEL_UNAVAILABLE", "message": "model server down; retry later"}
    assert payload["model"] is None
    assert payload["recipe"] is None
    assert payload["receive_time"] is None
    assert payload["replay"] is True


def test_unset_verdict_is_reported_as_error_never_pass() -> None:
    payload = verdict_payload(delivered(result(pb.VERDICT_UNSPECIFIED)), CONTEXT)

    assert payload["verdict"] == "ERROR"
    assert payload["error"]["code"] == "UNSPECIFIED"


def test_jsonl_sink_appends_one_parsable_line_per_verdict(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "verdicts.jsonl"
    sink = JsonLinesSink(path, CONTEXT)
    sink.emit(delivered(judged(pb.VERDICT_FAIL, [SCRATCH], ["line one\nline two"]), 1))
    sink.emit(delivered(result(pb.VERDICT_PASS, part_id="P-2", sequence=8), 2))
    sink.close()
    reopened = JsonLinesSink(path, CONTEXT)
    reopened.emit(delivered(result(pb.VERDICT_REVIEW, part_id="P-3", sequence=9), 3))  # appends to what is there
    reopened.close()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["part_id"] for line in lines] == ["P-1", "P-2", "P-3"]
    first = verdict_payload(delivered(judged(pb.VERDICT_FAIL, [SCRATCH], ["line one\nline two"]), 1), CONTEXT)
    assert json.loads(lines[0]) == first


def test_jsonl_file_is_its_own_record_after_a_crash(tmp_path: Path) -> None:
    """A restarted agent hands on again what the file may not have: the file is read back, so what it has is
    skipped, and a line torn by a crash mid-write is cut off first (its delivery is then written whole)."""
    path = tmp_path / "verdicts.jsonl"
    other = Context("acme", "line-1", "cam-2")
    first = JsonLinesSink(path, CONTEXT)
    for number in (1, 2, 3):
        first.emit(delivered(result(pb.VERDICT_PASS, part_id=f"P-{number}", sequence=number), number))
    JsonLinesSink(path, other).emit(delivered(result(pb.VERDICT_FAIL, part_id="Q-1"), 90))  # another camera
    first.close()
    line_4 = json.dumps(verdict_payload(delivered(result(pb.VERDICT_PASS, part_id="P-4", sequence=4), 4), CONTEXT))
    with path.open("a") as file:
        file.write(line_4[:37])  # the agent died in the middle of this line
    assert last_delivery_in(path, CONTEXT) == 3
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 4

    restarted = JsonLinesSink(path, CONTEXT)
    for number in (2, 3, 4, 5):  # what the spool still had: 2 and 3 are in the file already
        restarted.emit(delivered(result(pb.VERDICT_PASS, part_id=f"P-{number}", sequence=number), number))
    restarted.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["camera"], line["part_id"]) for line in lines] == [
        ("cam-1", "P-1"),
        ("cam-1", "P-2"),
        ("cam-1", "P-3"),
        ("cam-2", "Q-1"),
        ("cam-1", "P-4"),
        ("cam-1", "P-5"),
    ]
    assert restarted.delivered == 5
    assert last_delivery_in(tmp_path / "missing.jsonl", CONTEXT) == 0


def test_jsonl_sink_recovers_after_a_failed_write(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the directory should be")
    sink = JsonLinesSink(blocker / "verdicts.jsonl", CONTEXT)
    with pytest.raises(OSError):
        sink.emit(delivered(result(pb.VERDICT_PASS), 1))

    blocker.unlink()
    sink.emit(delivered(result(pb.VERDICT_PASS, part_id="P-2"), 2))
    sink.close()
    assert json.loads((blocker / "verdicts.jsonl").read_text())["part_id"] == "P-2"


class Recording:
    def __init__(self, name: str) -> None:
        self.name = name
        self.emitted: list[str] = []
        self.statuses: list[AgentStatus] = []
        self.closed = False

    def emit(self, delivery: Delivery) -> None:
        self.emitted.append(delivery.result.frame.part_id)

    def status(self, status: AgentStatus) -> None:
        self.statuses.append(status)

    def close(self) -> None:
        self.closed = True


class Broken:
    name = "broken"

    def emit(self, delivery: Delivery) -> None:
        raise OSError("disk full")

    def status(self, status: AgentStatus) -> None:
        raise RuntimeError("no terminal")

    def close(self) -> None:
        raise OSError("already gone")


class Flaky(Recording):
    """Fails until told otherwise (a full disk that is cleared)."""

    failing = True

    def emit(self, delivery: Delivery) -> None:
        if self.failing:
            raise OSError("disk full")
        super().emit(delivery)


class Recorded(Recording):
    """A sink that keeps its own record (as the JSON-lines file does)."""

    def __init__(self, name: str, holds: int = 0) -> None:
        super().__init__(name)
        self.holds = holds

    @property
    def delivered(self) -> int:
        return self.holds

    def emit(self, delivery: Delivery) -> None:
        if delivery.id > self.holds:
            super().emit(delivery)
            self.holds = delivery.id


def judge(spool: Spool, parts: list[str]) -> list[int]:
    """Frames through the spool to its outbox, as the agent takes their verdicts; their delivery ids."""
    ids = []
    for part in parts:
        capture = Capture(b"jpeg", pb.IMAGE_ENCODING_JPEG, part, CAPTURED, f"{part}.jpg")
        sequence = spool.append(capture)
        ids.append(spool.finish(sequence, result(pb.VERDICT_PASS, part_id=part, sequence=sequence), late=False).id)
    return ids


def test_one_failing_sink_never_stops_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "s.db")
    before, after, flaky = Recording("before"), Recording("after"), Flaky("flaky")
    sinks = SinkSet([before, Broken(), after, flaky], logging.getLogger("test.sinks"))
    sinks.attach(spool)

    parts = [f"P-{number}" for number in range(20)]
    for part in parts:
        judge(spool, [part])
        sinks.pump()
    sinks.status(AgentStatus(state="streaming"))
    flaky.failing = False  # the disk has room again: what it missed comes now, in order
    sinks.pump()
    sinks.close()

    assert before.emitted == after.emitted == flaky.emitted == parts
    assert before.closed and after.closed
    # Each pump tried the broken sink once (at its first delivery, where it stays), plus 1 status and 1 close.
    assert sinks.failures == {"before": 0, "broken": 23, "after": 0, "flaky": 20}
    # The status carries the failures counted before it went out.
    assert after.statuses[0].sink_failures == {"before": 0, "broken": 20, "after": 0, "flaky": 20}
    # Throttled: the first failure is logged, the flood is not.
    assert len([record for record in caplog.records if "broken" in record.getMessage()]) == 1


def test_a_restart_hands_on_again_only_to_sinks_with_a_record(tmp_path: Path) -> None:
    """After a crash, a sink that keeps a record is handed everything the spool saw it not confirm, and skips
    what its record has (exactly once); the console is not (at most once); the outbox is pruned of what all
    have."""
    spool = Spool(tmp_path / "s.db")
    file, console = Recorded("jsonl"), Recording("console")
    sinks = SinkSet([file, console], logging.getLogger("test.sinks"))
    sinks.attach(spool)
    ids = judge(spool, ["P-0", "P-1"])
    sinks.pump()
    sinks.save()  # positions as saved: both have P-1
    ids += judge(spool, ["P-2", "P-3"])
    sinks.pump()  # the file got P-2 and P-3, then the agent died before saving
    ids += judge(spool, ["P-4"])  # in the outbox, handed to no one
    spool.close()

    spool = Spool(tmp_path / "s.db")
    assert [delivery.id for delivery in spool.deliveries(0)] == ids[2:]  # pruned what both confirmed
    file_again, console_again = Recorded("jsonl", holds=ids[3]), Recording("console")
    sinks = SinkSet([file_again, console_again, Recording("new")], logging.getLogger("test.sinks"))
    sinks.attach(spool)
    sinks.pump()
    assert file_again.emitted == ["P-4"]  # P-2 and P-3 were handed again and skipped by its record
    assert console_again.emitted == []  # P-4 was never shown, and never will be
    ids += judge(spool, ["P-5"])
    sinks.pump()
    sinks.close()
    assert file_again.emitted == ["P-4", "P-5"] and console_again.emitted == ["P-5"]
    assert spool.deliveries(0) == []
    assert spool.cursor("jsonl") == ids[-1]


def test_sink_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        SinkSet([Recording("a"), Recording("a")], logging.getLogger("test.sinks"))


def test_log_throttle_reports_what_it_held_back(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = LogThrottle(logging.getLogger("test.throttle"), interval_s=10, clock=lambda: now[0])
    for step in range(25):
        now[0] = float(step)
        throttle.warning("key", "failed %s", step)

    assert [record.getMessage() for record in caplog.records] == [
        "failed 0",
        "failed 10 (9 more like this since the last report)",
        "failed 20 (9 more like this since the last report)",
    ]


def test_console_sink_draws_the_live_view_on_a_terminal() -> None:
    out = StringIO()
    sink = ConsoleSink(CONTEXT, Console(file=out, force_terminal=True, width=100))
    sink.emit(delivered(judged(pb.VERDICT_FAIL, [SCRATCH], ["scratch"]), 1, late=True))
    sink.emit(delivered(result(pb.VERDICT_PASS, part_id="P-2"), 2))
    sink.status(
        AgentStatus(
            state="streaming",
            rate_fps=12.5,
            latency_ms_p50=41.0,
            sink_failures={"mqtt": 3},
            retrying=2,
            errors={"MODEL_TIMEOUT": 4},
        )
    )
    sink.close()

    text = out.getvalue()
    for shown in (
        "acme/line-1/cam-1",
        "streaming",
        "12.5 frames/s",
        "41 ms",
        "PASS 1",
        "FAIL 1",
        "P-1 FAIL (late): scratch 0.90",
        "mqtt 3",
        "waiting 2",
        "MODEL_TIMEOUT 4",
    ):
        assert shown in text


def test_console_sink_prints_a_plain_line_when_not_a_terminal() -> None:
    out = StringIO()
    sink = ConsoleSink(CONTEXT, Console(file=out, force_terminal=False), plain_interval_s=3600)
    sink.status(AgentStatus(state="connecting"))
    sink.emit(delivered(judged(pb.VERDICT_FAIL, [SCRATCH], ["scratch"])))  # within the interval: no line
    sink.close()

    lines = out.getvalue().splitlines()
    assert lines == [
        "camera acme/line-1/cam-1 connecting: 0.0 frames/s, p50 0 ms, PASS 0 FAIL 0 REVIEW 0 ERROR 0",
        "camera acme/line-1/cam-1 connecting: 0.0 frames/s, p50 0 ms, PASS 0 FAIL 1 REVIEW 0 ERROR 0; "
        "last defects P-1 FAIL: scratch 0.90",
    ]
    assert "\x1b" not in out.getvalue()


def test_a_sink_new_to_the_spool_is_positioned_once_and_for_all(tmp_path: Path) -> None:
    """The first run dies before it ever saved positions: the sink's start, recorded when it was attached,
    still tells the next run what it was never handed."""
    spool = Spool(tmp_path / "s.db")
    judge(spool, ["old"])  # from before the file was configured: not the file's business
    SinkSet([Recorded("jsonl")], logging.getLogger("test.sinks")).attach(spool)
    judge(spool, ["P-0", "P-1"])  # committed, then the agent died before handing them on
    spool.close()

    spool = Spool(tmp_path / "s.db")
    file = Recorded("jsonl")
    sinks = SinkSet([file], logging.getLogger("test.sinks"))
    sinks.attach(spool)
    sinks.pump()
    assert file.emitted == ["P-0", "P-1"]
