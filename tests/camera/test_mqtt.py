"""MQTT verdicts (once each across a crash of the agent), status, last will and part-in-position triggers
against the real Mosquitto on loopback.

Each test uses its own tenant, so topics (and retained messages, cleared afterwards) never meet another test's.
Without a broker the broker tests skip on a developer's machine and fail in CI (CI=true), where it must run.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import AgentStatus, Capture, Context, Delivery
from lineqa.serving.camera.mqtt import MqttSink, MqttTrigger, TriggerCounts, parse_part_id, status_topic, verdict_topic
from lineqa.serving.camera.pacing import Backoff

REPO = Path(__file__).resolve().parents[2]
Broker = tuple[str, int]


@pytest.fixture
def context() -> Context:
    return Context(tenant=f"t{uuid.uuid4().hex[:10]}", line="line-1", camera="cam-1")


def connected_client(broker: Broker) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect(*broker)
    client.loop_start()
    return client


@contextmanager
def subscribed(broker: Broker, topic: str) -> Iterator[queue.Queue[dict[str, Any]]]:
    """A test client subscribed (confirmed by the broker) to ``topic``; its queue holds the JSON payloads."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_subscribe = lambda *_: ready.set()
    client.on_message = lambda _client, _data, message: received.put(json.loads(message.payload))
    client.connect(*broker)
    client.loop_start()
    client.subscribe(topic, qos=1)
    assert ready.wait(5), f"the broker did not confirm the subscription to {topic}"
    try:
        yield received
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def clear_retained(broker: Broker, context: Context) -> Iterator[None]:
    yield
    client = connected_client(broker)
    for topic in (status_topic(context), verdict_topic(context)):
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def next_matching(messages: queue.Queue[dict[str, Any]], check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while (left := deadline - time.monotonic()) > 0:
        message = messages.get(timeout=left)
        if check(message):
            return message
    raise AssertionError("no matching message within 5 s")


def result(verdict: pb.Verdict, part_id: str, reasons: list[str], record_id: str = "", number: int = 1) -> Delivery:
    message = pb.InspectionResult(verdict=verdict, reasons=reasons, record_id=record_id)
    message.frame.part_id = part_id
    message.frame.sequence = 1000 + number
    return Delivery(number, message)


def test_verdicts_go_to_the_line_topic_and_the_status_is_retained(
    broker: Broker, context: Context, clear_retained: None
) -> None:
    sink = MqttSink(*broker, context)
    try:
        with subscribed(broker, f"lineqa/{context.tenant}/{context.line}/+/verdict") as verdicts:
            sink.emit(result(pb.VERDICT_PASS, "P-1", ["no defect found"], "rec-1", 1))
            sink.emit(result(pb.VERDICT_FAIL, "P-2", ["scratch 0.91 >= 0.50"], "rec-2", 2))
            sink.emit(result(pb.VERDICT_ERROR, "P-3", ["not judged: model server down"], number=3))
            got = [verdicts.get(timeout=5) for _ in range(3)]

        assert [(m["part_id"], m["verdict"], m["reasons"], m["record_id"], m["sequence"]) for m in got] == [
            ("P-1", "PASS", ["no defect found"], "rec-1", 1001),
            ("P-2", "FAIL", ["scratch 0.91 >= 0.50"], "rec-2", 1002),
            ("P-3", "ERROR", ["not judged: model server down"], "", 1003),
        ]
        assert got[2]["error"] == {"code": "UNSPECIFIED", "message": ""}

        sink.status(AgentStatus(state="streaming", judged=3, verdicts={"PASS": 1, "FAIL": 1, "ERROR": 1}, rate_fps=2.5))
        # A subscriber that comes later still gets the current status: it is retained.
        with subscribed(broker, status_topic(context)) as statuses:
            status = next_matching(statuses, lambda message: message["state"] == "streaming")
        assert status["judged"] == 3
        assert status["verdicts"] == {"PASS": 1, "FAIL": 1, "ERROR": 1}
        assert status["rate_fps"] == 2.5
        assert status["time"].endswith("Z")
        assert datetime.fromisoformat(status["time"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
    finally:
        sink.close()

    # A clean close says offline too.
    with subscribed(broker, status_topic(context)) as statuses:
        assert statuses.get(timeout=5) == {"state": "offline"}


AGENT = """
import sys, time
from lineqa.serving.camera.model import AgentStatus, Context
from lineqa.serving.camera.mqtt import MqttSink
sink = MqttSink(sys.argv[1], int(sys.argv[2]), Context(sys.argv[3], "line-1", "cam-1"))
sink.status(AgentStatus(state="streaming"))
time.sleep(60)
"""


def test_last_will_says_offline_when_the_agent_dies(broker: Broker, context: Context, clear_retained: None) -> None:
    with subscribed(broker, status_topic(context)) as statuses:
        agent = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(AGENT), broker[0], str(broker[1]), context.tenant], cwd=REPO
        )
        try:
            next_matching(statuses, lambda message: message["state"] == "streaming")
        finally:
            agent.send_signal(signal.SIGKILL)  # no DISCONNECT packet: the broker must send the will
            agent.wait(5)
        assert next_matching(statuses, lambda message: True) == {"state": "offline"}

    with subscribed(broker, status_topic(context)) as later:
        assert later.get(timeout=5) == {"state": "offline"}


class Camera:
    """A fake ``grab``: a distinct frame per call, or None when told the camera has nothing yet."""

    def __init__(self, nothing_for: int = 0) -> None:
        self.grabs = 0
        self.nothing_for = nothing_for

    def grab(self) -> Capture | None:
        self.grabs += 1
        if self.grabs <= self.nothing_for:
            return None
        return Capture(b"jpeg", pb.IMAGE_ENCODING_JPEG, "", datetime.now(timezone.utc), f"frame-{self.grabs}")


def test_trigger_judges_each_part_once_with_its_id(broker: Broker, context: Context) -> None:
    topic = f"lineqa/{context.tenant}/{context.line}/trigger"
    camera = Camera(nothing_for=1)
    trigger = MqttTrigger(*broker, topic, camera.grab, dedupe_window_s=60)
    captures: list[Capture] = []
    reader = threading.Thread(target=lambda: captures.extend(trigger.captures()))
    reader.start()
    try:
        assert trigger.wait_subscribed(5)
        plc = connected_client(broker)
        messages = [
            b'{"part_id": "E"}',  # no frame yet: counted, not remembered
            b'{"part_id": "A", "station": 3}',
            b'{"part_id": "A", "station": 3}',  # repeated (as a QoS 1 redelivery would be): ignored
            b"B",  # a plain part id
            b'"C"',  # a JSON string
            b'{"station": 3}',  # no part id: ignored
            b"B",
            b'{"part_id": "E"}',  # now there is a frame
        ]
        for payload in messages:
            plc.publish(topic, payload, qos=1).wait_for_publish(5)
        plc.disconnect()
        plc.loop_stop()
        deadline = time.monotonic() + 5
        while trigger.counts.received < len(messages) and time.monotonic() < deadline:
            time.sleep(0.02)
        while len(captures) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        started = time.monotonic()
        trigger.close()
        reader.join(2)
    assert not reader.is_alive()
    assert time.monotonic() - started < 2

    assert [(capture.part_id, capture.origin) for capture in captures] == [
        ("A", "frame-2"),
        ("B", "frame-3"),
        ("C", "frame-4"),
        ("E", "frame-5"),
    ]
    assert trigger.counts == TriggerCounts(received=8, judged=4, duplicates=2, invalid=1, no_frame=1, overflow=0)


def test_trigger_close_ends_an_idle_iteration_promptly(broker: Broker, context: Context) -> None:
    trigger = MqttTrigger(*broker, f"lineqa/{context.tenant}/{context.line}/trigger", Camera().grab)
    assert trigger.wait_subscribed(5)
    reader = threading.Thread(target=lambda: list(trigger.captures()))
    reader.start()
    time.sleep(0.1)
    started = time.monotonic()
    trigger.close()
    reader.join(2)
    assert not reader.is_alive()
    assert time.monotonic() - started < 1.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens here once the probe is closed


@contextmanager
def relay(port: int, broker: Broker) -> Iterator[None]:
    """The broker, reachable on ``port`` only while this relays TCP there: a broker that comes up late."""
    server = socket.create_server(("127.0.0.1", port))
    connections: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                upstream = socket.create_connection(broker)
                connections.extend((client, upstream))
                threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield
    finally:
        server.close()
        for connection in connections:
            connection.close()


def test_verdicts_queued_while_the_broker_is_down_arrive_when_it_comes_up(
    broker: Broker, context: Context, clear_retained: None
) -> None:
    port = free_port()
    sink = MqttSink("127.0.0.1", port, context, reconnect=Backoff(initial_s=0.2, max_s=0.5))
    try:
        with subscribed(broker, verdict_topic(context)) as verdicts:
            started = time.monotonic()
            for number in range(3):
                sink.emit(result(pb.VERDICT_PASS, f"P-{number}", ["no defect found"], number=number + 1))
            sink.status(AgentStatus(state="spooling", spooled=3))
            assert time.monotonic() - started < 0.5
            assert sink.room == 1000 - 3 and sink.delivered == 0
            with relay(port, broker), subscribed(broker, status_topic(context)) as statuses:
                assert [verdicts.get(timeout=5)["part_id"] for _ in range(3)] == ["P-0", "P-1", "P-2"]
                # The newest status is sent on connect (it was not queued).
                assert next_matching(statuses, lambda message: message["state"] == "spooling")["spooled"] == 3
                sink.close()
            assert verdicts.empty()
        assert sink.delivered == 3
    finally:
        sink.close()


def test_sink_neither_blocks_nor_raises_without_a_broker(context: Context) -> None:
    sink = MqttSink("127.0.0.1", free_port(), context, max_queued=10)
    try:
        started = time.monotonic()
        for number in range(10):
            sink.emit(result(pb.VERDICT_FAIL, f"P-{number}", ["scratch"], number=number + 1))
            sink.status(AgentStatus(state="spooling"))
        assert time.monotonic() - started < 0.5
        assert sink.room == 0  # the rest wait in the agent's outbox
    finally:
        started = time.monotonic()
        sink.close()
    assert time.monotonic() - started < 2


CRASHING_AGENT = """
import os, signal, sys
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Context, Delivery
from lineqa.serving.camera.mqtt import MqttSink
sink = MqttSink(sys.argv[1], int(sys.argv[2]), Context(sys.argv[3], "line-1", "cam-1"))
for number in range(1, int(sys.argv[4]) + 1):
    result = pb.InspectionResult(verdict=pb.VERDICT_PASS)
    result.frame.sequence = 1000 + number
    sink.emit(Delivery(number, result))
while sys.argv[5] == "acknowledged" and sink.delivered < int(sys.argv[4]):
    pass
os.kill(os.getpid(), signal.SIGKILL)  # no goodbye: the next agent must find out what the broker has
"""


@pytest.mark.parametrize("died", ["acknowledged", "in flight"])
def test_a_restarted_sink_publishes_each_verdict_once(
    broker: Broker, context: Context, clear_retained: None, died: str
) -> None:
    """An agent died right after publishing verdicts 1-3 (acknowledged by the broker, or still on their way: it
    cannot know which arrived); after its restart it is handed 1-5 again: it reads the broker's retained last
    verdict back and publishes only what the broker does not have."""
    with subscribed(broker, verdict_topic(context)) as verdicts:
        agent = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CRASHING_AGENT), *map(str, broker), context.tenant, "3", died],
            cwd=REPO,
            timeout=30,
        )
        assert agent.returncode == -signal.SIGKILL
        restarted = MqttSink(*broker, context)
        try:
            for number in range(1, 6):
                restarted.emit(result(pb.VERDICT_PASS, f"P-{number}", [], number=number))
            deadline = time.monotonic() + 5
            while restarted.delivered < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            restarted.close()
        time.sleep(0.3)
        got = []
        while not verdicts.empty():
            got.append(verdicts.get())
    assert [message["sequence"] for message in got] == [1001, 1002, 1003, 1004, 1005]
    assert restarted.delivered == 5


@pytest.mark.parametrize(
    ("payload", "part_id"),
    [
        (b'{"part_id": "P-1"}', "P-1"),
        (b'{"part_id": 12345}', "12345"),
        (b'{"serial": "S-9"}', None),
        (b'{"part_id": ""}', None),
        (b'{"part_id": true}', None),
        (b'"P-2"', "P-2"),
        (b" P-3 \n", "P-3"),
        (b"12345", "12345"),
        (b"null", None),
        (b"[1, 2]", None),
        (b"", None),
        (b"\xff\xfe", None),
    ],
)
def test_part_id_from_a_trigger_payload(payload: bytes, part_id: str | None) -> None:
    assert parse_part_id(payload, "part_id") == part_id


def test_topics_refuse_wildcards_in_names() -> None:
    assert verdict_topic(Context("acme", "line-1", "cam-1")) == "lineqa/acme/line-1/cam-1/verdict"
    with pytest.raises(ValueError, match="topic level"):
        MqttSink("127.0.0.1", 1, Context("acme", "line/#", "cam-1"))
