"""The verdict payload, the JSON-lines file, the console view and the fan-out that keeps sinks independent."""

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
from lineqa.serving.camera.model import AgentStatus, Context
from lineqa.serving.camera.sinks import JsonLinesSink, LogThrottle, SinkSet, verdict_payload

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


def test_pass_payload_has_every_key_and_no_error() -> None:
    payload = verdict_payload(judged(pb.VERDICT_PASS, [], ["no defect found"]), CONTEXT)

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
    payload = verdict_payload(judged(pb.VERDICT_FAIL, [SCRATCH, unscaled], ["scratch 0.90 >= 0.50"]), CONTEXT)

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
    payload = verdict_payload(result(pb.VERDICT_ERROR, error=error, replay=True), CONTEXT)

    assert payload["verdict"] == "ERROR"
    assert payload["error"] == {"code": "MODEL_UNAVAILABLE", "message": "model server down; retry later"}
    assert payload["model"] is None
    assert payload["recipe"] is None
    assert payload["receive_time"] is None
    assert payload["replay"] is True


def test_unset_verdict_is_reported_as_error_never_pass() -> None:
    payload = verdict_payload(result(pb.VERDICT_UNSPECIFIED), CONTEXT)

    assert payload["verdict"] == "ERROR"
    assert payload["error"]["code"] == "UNSPECIFIED"


def test_jsonl_sink_appends_one_parsable_line_per_verdict(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "verdicts.jsonl"
    sink = JsonLinesSink(path, CONTEXT)
    sink.emit(judged(pb.VERDICT_FAIL, [SCRATCH], ["line one\nline two"]))
    sink.emit(result(pb.VERDICT_PASS, part_id="P-2", sequence=8))
    sink.close()
    reopened = JsonLinesSink(path, CONTEXT)
    reopened.emit(result(pb.VERDICT_REVIEW, part_id="P-3", sequence=9))  # appends to what is there
    reopened.close()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["part_id"] for line in lines] == ["P-1", "P-2", "P-3"]
    assert json.loads(lines[0]) == verdict_payload(judged(pb.VERDICT_FAIL, [SCRATCH], ["line one\nline two"]), CONTEXT)


def test_jsonl_sink_recovers_after_a_failed_write(tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the directory should be")
    sink = JsonLinesSink(blocker / "verdicts.jsonl", CONTEXT)
    with pytest.raises(OSError):
        sink.emit(result(pb.VERDICT_PASS))

    blocker.unlink()
    sink.emit(result(pb.VERDICT_PASS, part_id="P-2"))
    sink.close()
    assert json.loads((blocker / "verdicts.jsonl").read_text())["part_id"] == "P-2"


class Recording:
    def __init__(self, name: str) -> None:
        self.name = name
        self.emitted: list[str] = []
        self.statuses: list[AgentStatus] = []
        self.closed = False

    def emit(self, result: pb.InspectionResult) -> None:
        self.emitted.append(result.frame.part_id)

    def status(self, status: AgentStatus) -> None:
        self.statuses.append(status)

    def close(self) -> None:
        self.closed = True


class Broken:
    name = "broken"

    def emit(self, result: pb.InspectionResult) -> None:
        raise OSError("disk full")

    def status(self, status: AgentStatus) -> None:
        raise RuntimeError("no terminal")

    def close(self) -> None:
        raise OSError("already gone")


class Dropping(Recording):
    dropped = 4


def test_one_failing_sink_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    before, after, dropping = Recording("before"), Recording("after"), Dropping("mqtt")
    sinks = SinkSet([before, Broken(), after, dropping], logging.getLogger("test.sinks"))

    for number in range(20):
        sinks.emit(result(pb.VERDICT_PASS, part_id=f"P-{number}"))
    sinks.status(AgentStatus(state="streaming"))
    sinks.close()

    expected = [f"P-{number}" for number in range(20)]
    assert before.emitted == expected
    assert after.emitted == expected
    assert before.closed and after.closed
    # 20 emits + 1 status + 1 close raised; the dropping sink's own count is reported too.
    assert sinks.failures == {"before": 0, "broken": 22, "after": 0, "mqtt": 4}
    # The status carries the failures counted before it went out.
    assert after.statuses[0].sink_failures == {"before": 0, "broken": 20, "after": 0, "mqtt": 4}
    # Throttled: the first failure is logged, the flood is not.
    assert len([record for record in caplog.records if "broken" in record.getMessage()]) == 1


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
    sink.emit(judged(pb.VERDICT_FAIL, [SCRATCH], ["scratch"]))
    sink.emit(result(pb.VERDICT_PASS, part_id="P-2"))
    sink.status(AgentStatus(state="streaming", rate_fps=12.5, latency_ms_p50=41.0, sink_failures={"mqtt": 3}))
    sink.close()

    text = out.getvalue()
    for shown in (
        "acme/line-1/cam-1",
        "streaming",
        "12.5 frames/s",
        "41 ms",
        "PASS 1",
        "FAIL 1",
        "P-1 FAIL: scratch 0.90",
        "mqtt 3",
    ):
        assert shown in text


def test_console_sink_prints_a_plain_line_when_not_a_terminal() -> None:
    out = StringIO()
    sink = ConsoleSink(CONTEXT, Console(file=out, force_terminal=False), plain_interval_s=3600)
    sink.status(AgentStatus(state="connecting"))
    sink.emit(judged(pb.VERDICT_FAIL, [SCRATCH], ["scratch"]))  # within the interval: no line
    sink.close()

    lines = out.getvalue().splitlines()
    assert lines == [
        "camera acme/line-1/cam-1 connecting: 0.0 frames/s, p50 0 ms, PASS 0 FAIL 0 REVIEW 0 ERROR 0",
        "camera acme/line-1/cam-1 connecting: 0.0 frames/s, p50 0 ms, PASS 0 FAIL 1 REVIEW 0 ERROR 0; "
        "last defects P-1 FAIL: scratch 0.90",
    ]
    assert "\x1b" not in out.getvalue()
