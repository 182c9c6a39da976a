"""The agent's retries, keepalive and stream deadline, over real gRPC on loopback against a stand-in gateway.

The stand-in answers each frame as a test's script says (a model timeout on the first two attempts, an invalid
image, a sequence conflict, a call that hangs): the real gateway cannot be made to do these on cue. What the
real gateway does with the same agent is in tests/serving/test_camera_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.camera.agent import CameraAgent, GatewayTarget, StreamSettings
from lineqa.serving.camera.model import AgentStatus, Capture, Context
from lineqa.serving.camera.pacing import Backoff, Pacer
from lineqa.serving.camera.retry import RetryPolicy, TransientAnswer
from lineqa.serving.camera.sinks import JsonLinesSink, SinkSet
from lineqa.serving.camera.spool import Spool
from tests.helpers.tcp_proxy import TcpProxy

CONTEXT = Context("acme", "line-1", "cam-1")
QUICK_RETRY = Backoff(initial_s=0.05, max_s=0.1)
Script = Callable[[pb.Frame, int], pb.InspectionResult]


def error(code: pb.ErrorCode) -> pb.InspectionResult:
    return pb.InspectionResult(verdict=pb.VERDICT_ERROR, error=pb.InspectionError(code=code, message="scripted"))


def passed(frame: pb.Frame, attempt: int) -> pb.InspectionResult:
    return pb.InspectionResult(verdict=pb.VERDICT_PASS, record_id=f"rec-{frame.identity.part_id}")


class StandIn(pb_grpc.InspectionServiceServicer):
    """Answers each frame as ``script(frame, attempt)`` says; ``hang_calls`` calls answer 3 frames, then hang."""

    def __init__(self, script: Script = passed, hang_calls: int = 0) -> None:
        self.script = script
        self.hang_calls = hang_calls
        self.calls = 0
        self.attempts: Counter[str] = Counter()

    async def StreamInspect(  # noqa: N802 - the gRPC method's name
        self, requests: AsyncIterator[pb.StreamInspectRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.StreamInspectResponse]:
        self.calls += 1
        answered = 0
        async for request in requests:
            if self.calls <= self.hang_calls and answered >= 3:
                await asyncio.sleep(3600)  # alive (answers pings), but judges nothing more
            part = request.frame.identity.part_id
            self.attempts[part] += 1
            result = self.script(request.frame, self.attempts[part])
            result.frame.CopyFrom(request.frame.identity)
            answered += 1
            yield pb.StreamInspectResponse(result=result)


class Parts:
    """A frame source of numbered parts (P0, P1, ...), paced at ``rate_fps``."""

    def __init__(self, count: int, rate_fps: float | None = None) -> None:
        self.count = count
        self._stop = threading.Event()
        self._pacer = Pacer(rate_fps, self._stop)

    def captures(self) -> Iterator[Capture]:
        for number in range(self.count):
            if not self._pacer.wait():
                return
            yield Capture(b"\xff\xd8 jpeg", pb.IMAGE_ENCODING_JPEG, f"P{number}", datetime.now(timezone.utc), "x")

    def close(self) -> None:
        self._stop.set()


async def run_agent(
    tmp_path: Path,
    stand_in: StandIn,
    source: Parts,
    *,
    stream: StreamSettings | None = None,
    retry: RetryPolicy | None = None,
    proxy: Callable[[int], int] = lambda port: port,
    timeout_s: float = 30,
) -> tuple[AgentStatus, list[dict[str, Any]]]:
    server = grpc.aio.server(
        options=[("grpc.http2.min_ping_interval_without_data_ms", 500), ("grpc.keepalive_permit_without_calls", 1)]
    )
    pb_grpc.add_InspectionServiceServicer_to_server(stand_in, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    spool = Spool(tmp_path / "spool.db")
    out = tmp_path / "verdicts.jsonl"
    sinks = SinkSet([JsonLinesSink(out, CONTEXT)], logging.getLogger("test.agent"))
    target = GatewayTarget(f"127.0.0.1:{proxy(port)}", None, "token")
    agent = CameraAgent(target, CONTEXT, "recipe", spool, sinks, stream=stream, retry=retry)
    try:
        status = await asyncio.wait_for(agent.run(source, asyncio.Event()), timeout_s)
    finally:
        sinks.close()
        spool.close()
        await server.stop(0)
    return status, [json.loads(line) for line in out.read_text().splitlines()]


def summary(lines: list[dict[str, Any]]) -> list[tuple[str, str, str | None, bool, bool]]:
    return [
        (line["part_id"], line["verdict"], (line["error"] or {}).get("code"), line["retrying"], line["late"])
        for line in lines
    ]


def flaky_model(frame: pb.Frame, attempt: int) -> pb.InspectionResult:
    """P1: the model times out twice, then P1 is judged FAIL; P2 is a corrupt image; P3 a sequence conflict."""
    part = frame.identity.part_id
    if part == "P1":
        return error(pb.ERROR_CODE_MODEL_TIMEOUT) if attempt <= 2 else pb.InspectionResult(verdict=pb.VERDICT_FAIL)
    if part == "P2":
        return error(pb.ERROR_CODE_INVALID_IMAGE)
    if part == "P3":
        return error(pb.ERROR_CODE_SEQUENCE_CONFLICT)
    return passed(frame, attempt)


def test_a_transient_error_is_answered_at_once_and_judged_late(tmp_path: Path) -> None:
    stand_in = StandIn(flaky_model)
    retry = RetryPolicy(TransientAnswer.ANSWER, QUICK_RETRY)
    status, lines = asyncio.run(run_agent(tmp_path, stand_in, Parts(6), retry=retry))

    answers = [entry for entry in summary(lines) if not entry[4]]
    assert answers == [  # every part's answer, in sequence order: the gate never waits for a retry
        ("P0", "PASS", None, False, False),
        ("P1", "ERROR", "MODEL_TIMEOUT", True, False),
        ("P2", "ERROR", "INVALID_IMAGE", False, False),
        ("P3", "ERROR", "SEQUENCE_CONFLICT", False, False),
        ("P4", "PASS", None, False, False),
        ("P5", "PASS", None, False, False),
    ]
    assert [entry for entry in summary(lines) if entry[4]] == [("P1", "FAIL", None, False, True)]
    sequences = {line["part_id"]: line["sequence"] for line in lines}
    assert (
        len(set(sequences.values())) == 6
        and [line["sequence"] for line in lines if line["part_id"] == "P1"] == [sequences["P1"]] * 2
    )
    # Transient: tried until judged; final errors: once.
    assert stand_in.attempts == {"P0": 1, "P1": 3, "P2": 1, "P3": 1, "P4": 1, "P5": 1}
    assert status.errors == {"MODEL_TIMEOUT": 2, "INVALID_IMAGE": 1, "SEQUENCE_CONFLICT": 1}
    assert (status.judged, status.late, status.spooled, status.retrying) == (6, 1, 0, 0)
    assert status.verdicts == {"PASS": 3, "ERROR": 3, "FAIL": 1}


def test_a_retried_frame_is_not_sent_again_while_its_verdict_is_being_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the chaos test on a loaded machine: the spool took long to store a retried frame's verdict, the
    agent meanwhile saw the frame still due in the spool and sent it once more, and its second answer (the
    gateway's replay) was handed on too. Storing is slowed here (0.5 s), with retries due at once."""
    store = Spool.finish

    def slow_finish(self: Spool, sequence: int, result: pb.InspectionResult, *, late: bool) -> object:
        time.sleep(0.5)  # a busy disk
        return store(self, sequence, result, late=late)

    monkeypatch.setattr(Spool, "finish", slow_finish)
    stand_in = StandIn(flaky_model)
    retry = RetryPolicy(TransientAnswer.ANSWER, Backoff(initial_s=0.001, max_s=0.001))
    status, lines = asyncio.run(run_agent(tmp_path, stand_in, Parts(3), retry=retry))

    assert stand_in.attempts["P1"] == 3  # two timeouts, one verdict: never a fourth send
    final = [entry for entry in summary(lines) if entry[0] == "P1" and not entry[3]]
    assert final == [("P1", "FAIL", None, False, True)]
    assert (status.judged, status.late) == (3, 1)


def test_the_spool_hands_on_a_frames_verdict_once_however_often_it_is_answered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    try:
        [capture] = list(Parts(1).captures())
        sequence = spool.append(capture)
        verdict = pb.InspectionResult(verdict=pb.VERDICT_FAIL)
        first = spool.finish(sequence, verdict, late=False)
        assert first is not None and first.result.verdict == pb.VERDICT_FAIL
        assert spool.finish(sequence, verdict, late=True) is None  # the replay of a frame sent twice
        late_error = error(pb.ERROR_CODE_MODEL_TIMEOUT)
        assert spool.defer(sequence, late_error, retry_at=0.0, hand_on=True) is None  # not brought back either
        assert len(spool) == 0 and len(spool.deliveries(-1)) == 1
    finally:
        spool.close()


def test_wait_hands_on_nothing_until_judged(tmp_path: Path) -> None:
    stand_in = StandIn(flaky_model)
    retry = RetryPolicy(TransientAnswer.WAIT, QUICK_RETRY)
    status, lines = asyncio.run(run_agent(tmp_path, stand_in, Parts(3), retry=retry))

    assert sorted(summary(lines)) == [
        ("P0", "PASS", None, False, False),
        ("P1", "FAIL", None, False, True),
        ("P2", "ERROR", "INVALID_IMAGE", False, False),
    ]
    assert stand_in.attempts["P1"] == 3 and status.late == 1


def test_keepalive_notices_a_half_open_connection(tmp_path: Path) -> None:
    """The link to the gateway goes silent (a stalled proxy: nothing passes, nothing is closed); the agent's
    pings go unanswered, it drops the connection within keepalive + timeout and resumes on a new one, well
    before the stream's deadline."""
    stand_in = StandIn()
    stream = StreamSettings(keepalive_s=1.0, keepalive_timeout_s=1.0, deadline_s=120)
    out = tmp_path / "verdicts.jsonl"
    stalled_at: list[float] = []

    with TcpProxy(("127.0.0.1", 0)) as proxy:

        def through_proxy(port: int) -> int:
            proxy.target = ("127.0.0.1", port)
            return proxy.port

        async def stall_after_ten() -> None:
            while not out.exists() or len(out.read_text().splitlines()) < 10:
                await asyncio.sleep(0.05)
            proxy.stall()
            stalled_at.append(time.monotonic())

        async def scenario() -> tuple[AgentStatus, list[dict[str, Any]]]:
            staller = asyncio.create_task(stall_after_ten())
            result = await run_agent(tmp_path, stand_in, Parts(40, rate_fps=10), stream=stream, proxy=through_proxy)
            await staller
            return result

        status, lines = asyncio.run(scenario())
        accepted = proxy.accepted
    assert [line["part_id"] for line in lines] == [f"P{number}" for number in range(40)]  # each once, in order
    assert accepted >= 2 and stand_in.calls >= 2 and status.spooled == 0
    # 30 frames were left at 10 frames/s: about 3 s of work, plus noticing the dead link (1 s + 1 s of pings).
    assert time.monotonic() - stalled_at[0] < 10


def test_a_call_that_stops_answering_ends_at_its_deadline_and_calls_rotate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in = StandIn(hang_calls=1)  # the first call answers 3 frames, then nothing (but stays open)
    stream = StreamSettings(deadline_s=1.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        status, lines = asyncio.run(run_agent(tmp_path, stand_in, Parts(30, rate_fps=10), stream=stream))
    assert [line["part_id"] for line in lines] == [f"P{number}" for number in range(30)]
    assert time.monotonic() - started < 15
    assert "DEADLINE_EXCEEDED" in caplog.text  # the hung call
    # Later calls end before their deadline (half-closed at 80 % of it): rotated, not failed.
    assert stand_in.calls >= 3
    assert caplog.text.count("DEADLINE_EXCEEDED") == 1
    assert status.judged == 30
