"""MQTT on the line: verdicts and status out to the PLC gateway, part-in-position triggers in.

Topics are per camera, under its line:

* ``lineqa/<tenant>/<line>/<camera>/verdict``: one :func:`~lineqa.serving.camera.sinks.verdict_payload` per
  verdict handed on, QoS 1, **retained**: the broker's retained message is the camera's last verdict, which
  is how a restarted agent knows what the broker already has (see :class:`MqttSink`). A subscriber
  (``lineqa/<tenant>/<line>/+/verdict`` for the whole line) gets every verdict once with the retain flag
  clear, and, when it subscribes, each camera's last one with the retain flag set: already delivered.
* ``lineqa/<tenant>/<line>/<camera>/status``: the agent's status, retained, so whoever subscribes later sees
  the current state at once; the broker replaces it with ``{"state": "offline"}`` (the last will) when the
  agent vanishes without saying goodbye.
* ``lineqa/<tenant>/<line>/<camera>/sync``: the agent's own marker while it reads the retained verdict back.

The trigger uses paho-mqtt's network thread (``loop_start``), which reconnects by itself; the verdict sink
runs its own connection thread. Neither the stream nor the agent ever waits for the broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from lineqa.serving.camera.model import AgentStatus, Capture, Context, Delivery
from lineqa.serving.camera.pacing import Backoff
from lineqa.serving.camera.sinks import LogThrottle, verdict_payload

logger = logging.getLogger(__name__)

OFFLINE_PAYLOAD = json.dumps({"state": "offline"})

_CLOSE_TIMEOUT_S = 2.0  # how long close() waits for the broker to take what is still queued
_RECONNECT = Backoff(initial_s=1.0, max_s=30.0)  # the verdict sink's, as paho's own for the trigger


@dataclass(frozen=True)
class MqttSecurity:
    """How to authenticate to the broker: username/password and/or TLS (``ca_file`` None: the system's CAs;
    ``cert_file``/``key_file``: a client certificate)."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def verdict_topic(context: Context) -> str:
    return f"lineqa/{context.tenant}/{context.line}/{context.camera}/verdict"


def sync_topic(context: Context) -> str:
    return f"lineqa/{context.tenant}/{context.line}/{context.camera}/sync"


def status_topic(context: Context) -> str:
    return f"lineqa/{context.tenant}/{context.line}/{context.camera}/status"


def _check_topic_level(kind: str, value: str) -> None:
    # A wildcard or separator in a name would publish to someone else's topics.
    if not value or any(char in value for char in "/+#\0"):
        raise ValueError(f"the {kind} {value!r} cannot be an MQTT topic level (empty, or contains / + # or NUL)")


def _client(security: MqttSecurity | None, client_id: str = "", *, reconnect: bool = True) -> paho.Client:
    """A client that, once started, reconnects by itself 1 s to 30 s apart (unless ``reconnect`` is off)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, reconnect_on_failure=reconnect
    )
    if security is not None:
        if security.username is not None:
            client.username_pw_set(security.username, security.password)
        if security.tls:
            client.tls_set(
                ca_certs=str(security.ca_file) if security.ca_file else None,
                certfile=str(security.cert_file) if security.cert_file else None,
                keyfile=str(security.key_file) if security.key_file else None,
            )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.connect_timeout = 3.0
    client.enable_logger(logger)
    # A callback that raises would otherwise end paho's thread, and with it every later verdict or trigger.
    client.suppress_exceptions = True
    return client


def _start(client: paho.Client, host: str, port: int, keepalive_s: int) -> None:
    """Connects in paho's thread, so that neither a constructor nor the agent waits for the broker."""
    client.connect_async(host, port, keepalive=keepalive_s)
    client.loop_start()


def _stop(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


@dataclass
class _Outgoing:
    delivery: int
    payload: bytes
    sent: paho.MQTTMessageInfo | None = None  # published on the current connection


class MqttSink:
    """Publishes verdicts (QoS 1, retained, in outbox order) and the retained status of one camera, once each
    across crashes of the agent and losses of the broker; never blocks or raises for the broker.

    QoS 1 alone is at-least-once: a verdict whose acknowledgement was lost, or that was on its way when the
    agent died, would be published again. So every connection (a new client, same client id: the broker drops
    any old connection of this camera first) starts by reading the camera's retained verdict back: it subscribes
    to its verdict topic and its sync topic, publishes a random marker to the sync topic, and once the marker
    comes back, the retained verdict (if any) has arrived before it (the broker sends one connection's messages
    in order). Deliveries up to that one are on the broker and are skipped; the rest are published in order.
    A message is either on the broker, retained, or not: there is no moment at which the broker holds a verdict
    but not the record of it. This needs a broker that keeps retained messages (persistence on, to survive
    its own restarts); one that refuses the subscription costs this guarantee (logged).

    Deliveries wait in memory until the broker acknowledges them, at most ``max_queued`` (``room``); past that
    they stay in the agent's outbox. A status is not queued: only the newest matters, and it is published on
    every connect, which also replaces the ``offline`` the last will may have left.
    """

    name = "mqtt"

    def __init__(
        self,
        host: str,
        port: int,
        context: Context,
        *,
        security: MqttSecurity | None = None,
        max_queued: int = 1000,
        keepalive_s: int = 15,
        reconnect: Backoff = _RECONNECT,
    ) -> None:
        for kind, value in (("tenant", context.tenant), ("line", context.line), ("camera", context.camera)):
            _check_topic_level(kind, value)
        self._address = (host, port, keepalive_s)
        self._context = context
        self._security = security
        self._reconnect = reconnect
        self._client_id = f"lineqa-{context.tenant}-{context.line}-{context.camera}"
        self._verdict_topic = verdict_topic(context)
        self._status_topic = status_topic(context)
        self._sync_topic = sync_topic(context)
        self._max_queued = max_queued
        self._lock = threading.Lock()
        self._outgoing: deque[_Outgoing] = deque()
        self._confirmed = 0
        self._client: paho.Client | None = None  # connected and read back: verdicts may be published
        self._marker = ""
        self._retained = 0
        self._status: str | None = None
        self._closing = threading.Event()
        self._lost = threading.Event()
        self._throttle = LogThrottle(logger)
        self._thread = threading.Thread(target=self._connect_loop, name="mqtt-verdicts", daemon=True)
        self._thread.start()

    @property
    def delivered(self) -> int:
        """The newest delivery the broker holds for certain (acknowledged, or retained when read back)."""
        with self._lock:
            self._take_acks()
            return self._confirmed

    @property
    def room(self) -> int:
        with self._lock:
            self._take_acks()
            return self._max_queued - len(self._outgoing)

    def emit(self, delivery: Delivery) -> None:
        with self._lock:
            if delivery.id <= self._confirmed or (self._outgoing and delivery.id <= self._outgoing[-1].delivery):
                return  # the broker has it, or it is on its way
            payload = json.dumps(verdict_payload(delivery, self._context), separators=(",", ":")).encode()
            entry = _Outgoing(delivery.id, payload)
            self._outgoing.append(entry)
            if self._client is not None:
                self._publish(self._client, entry)

    def status(self, status: AgentStatus) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = dict(dataclasses.asdict(status), time=now)  # a stale retained status shows its age
        with self._lock:
            self._status = json.dumps(payload, separators=(",", ":"))
            if self._client is not None:
                self._client.publish(self._status_topic, self._status, qos=1, retain=True)

    def close(self) -> None:
        """Waits up to 2 s for the broker to take the queued verdicts, says ``offline`` (retained), disconnects."""
        deadline = time.monotonic() + _CLOSE_TIMEOUT_S
        while time.monotonic() < deadline:
            with self._lock:
                self._take_acks()
                last = self._outgoing[-1].sent if self._outgoing else None
                client = self._client
            if client is None or last is None:
                break
            with contextlib.suppress(ValueError, RuntimeError):
                last.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            info = client.publish(self._status_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
            with contextlib.suppress(ValueError, RuntimeError):  # connection lost meanwhile
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        self._closing.set()
        self._lost.set()
        self._thread.join(_CLOSE_TIMEOUT_S + 5)

    # -- under the lock -------------------------------------------------------------------------------------

    def _take_acks(self) -> None:
        """Forget the verdicts the broker acknowledged (it acknowledges one connection's in order)."""
        while self._outgoing and self._outgoing[0].sent is not None and self._outgoing[0].sent.is_published():
            self._confirmed = max(self._confirmed, self._outgoing.popleft().delivery)

    def _publish(self, client: paho.Client, entry: _Outgoing) -> None:
        entry.sent = client.publish(self._verdict_topic, entry.payload, qos=1, retain=True)

    # -- the connection thread and paho's callbacks ---------------------------------------------------------

    def _connect_loop(self) -> None:
        delays: Iterator[float] | None = None
        while not self._closing.is_set():
            client = _client(self._security, self._client_id, reconnect=False)
            client.will_set(self._status_topic, OFFLINE_PAYLOAD, qos=1, retain=True)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            client.on_disconnect = self._on_disconnect
            self._lost.clear()
            try:
                host, port, keepalive_s = self._address
                client.connect(host, port, keepalive=keepalive_s)
            except Exception as exc:  # refused, unreachable, TLS: paho raises what the socket raised
                self._throttle.warning("connect", "MQTT broker %s:%d unreachable for verdicts: %s", host, port, exc)
            else:
                client.loop_start()
                self._lost.wait()
                with self._lock:
                    if self._client is client:
                        self._client = None
                        delays = None  # it was a good connection: reconnect quickly
                    self._take_acks()
                    for entry in self._outgoing:
                        entry.sent = None  # published again, or skipped, after the next read-back
                client.disconnect()
                client.loop_stop()
            if delays is None:
                delays = self._reconnect.delays()
            self._closing.wait(next(delays))

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            self._throttle.warning("refused", "MQTT broker refused the verdict sink: %s", reason)
            self._lost.set()
            return
        with self._lock:
            if self._status is not None:
                client.publish(self._status_topic, self._status, qos=1, retain=True)
            self._retained = 0
        client.subscribe([(self._verdict_topic, 1), (self._sync_topic, 1)])

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            logger.error(
                "MQTT broker refused reading back %s: after a crash a verdict may be published twice",
                self._verdict_topic,
            )
            self._read_back(client)
            return
        with self._lock:
            self._marker = uuid.uuid4().hex
            client.publish(self._sync_topic, self._marker, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._verdict_topic and message.retain:
            try:
                delivery = json.loads(message.payload).get("delivery")
            except (ValueError, AttributeError):
                delivery = None
            if isinstance(delivery, int) and not isinstance(delivery, bool):
                with self._lock:
                    self._retained = max(self._retained, delivery)
        elif message.topic == self._sync_topic and message.payload.decode("utf-8", "replace") == self._marker:
            client.unsubscribe([self._verdict_topic, self._sync_topic])
            self._read_back(client)

    def _read_back(self, client: paho.Client) -> None:
        """The broker's record is known: skip what it has, publish the rest in order, go live."""
        with self._lock:
            self._take_acks()
            self._confirmed = max(self._confirmed, self._retained)
            while self._outgoing and self._outgoing[0].delivery <= self._confirmed:
                self._outgoing.popleft()
            for entry in self._outgoing:
                self._publish(client, entry)
            self._client = client
        logger.info("MQTT verdict sink connected; verdicts go to %s", self._verdict_topic)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure and not self._closing.is_set():
            self._throttle.warning("disconnect", "MQTT verdict sink lost the broker (%s); reconnecting", reason)
        self._lost.set()


@dataclass
class TriggerCounts:
    """What became of the trigger messages: each one received ends in exactly one of ``judged`` (a capture was
    handed on), ``duplicates``, ``invalid`` (no part id), ``no_frame`` or ``overflow`` (the agent too far
    behind)."""

    received: int = 0
    judged: int = 0
    duplicates: int = 0
    invalid: int = 0
    no_frame: int = 0
    overflow: int = 0


def parse_part_id(payload: bytes, field: str) -> str | None:
    """The part id in a trigger: ``{"<field>": "P-1", ...}``, a JSON string, or the payload's plain text."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return text or None
    if isinstance(value, dict):
        part = value.get(field)
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            return None
        return str(part) or None
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return text  # a numeric serial, kept as written (no 1e3 -> 1000.0)
    return None  # null, true, a list: nothing that names a part


class MqttTrigger:
    """A frame source driven by the line's part-in-position messages: one capture per part, with its id.

    The frame is grabbed when the message arrives (in paho's thread), not when the agent gets round to it, so
    it shows the part in position even while the agent is busy. A part id that was judged less than
    ``dedupe_window_s`` ago (a QoS 1 redelivery, a PLC that repeats itself) is ignored, so each part is judged
    once; a trigger that found no frame is not remembered, so the PLC may simply send it again. Triggers sent
    while the agent is disconnected are not kept by the broker (clean session): a frame grabbed later would
    show some other part.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        grab: Callable[[], Capture | None],
        *,
        part_id_field: str = "part_id",
        dedupe_window_s: float = 30.0,
        max_pending: int = 256,
        security: MqttSecurity | None = None,
        keepalive_s: int = 15,
    ) -> None:
        if not topic:
            raise ValueError("the trigger topic is empty")
        self.topic = topic
        self._grab = grab
        self._field = part_id_field
        self._window_s = dedupe_window_s
        self._max_pending = max_pending
        self._pending: deque[Capture] = deque()
        self._closed = False
        self._ready = threading.Condition()  # guards _pending, _closed, _judged_at and _counts
        self._judged_at: dict[str, float] = {}
        self._counts = TriggerCounts()
        self._subscribed = threading.Event()
        self._throttle = LogThrottle(logger)
        self._client = _client(security)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        _start(self._client, host, port, keepalive_s)

    @property
    def counts(self) -> TriggerCounts:
        with self._ready:
            return dataclasses.replace(self._counts)

    def wait_subscribed(self, timeout_s: float) -> bool:
        """Whether the broker confirmed the subscription within ``timeout_s`` (triggers before it are lost)."""
        return self._subscribed.wait(timeout_s)

    def captures(self) -> Iterator[Capture]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                capture = self._pending.popleft()
            yield capture

    def close(self) -> None:
        """Ends ``captures()`` at once (captures not yet taken are the agent's to lose: it is stopping)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        _stop(self._client)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # Logged here with its traceback (paho would log the message only), and the next trigger still runs.
        try:
            self._handle(bytes(message.payload))
        except Exception:
            logger.exception("MQTT trigger message on %s could not be handled", message.topic)

    def _handle(self, payload: bytes) -> None:
        part_id = parse_part_id(payload, self._field)
        now = time.monotonic()
        with self._ready:
            self._counts.received += 1
            self._judged_at = {part: at for part, at in self._judged_at.items() if now - at < self._window_s}
            if part_id is None:
                self._counts.invalid += 1
            elif part_id in self._judged_at:
                self._counts.duplicates += 1
                logger.debug("MQTT trigger for part %r repeated within %.0f s: ignored", part_id, self._window_s)
                return
        if part_id is None:
            self._throttle.warning("invalid", "MQTT trigger without a part id ignored: %r", payload[:200])
            return
        frame = self._grab_frame(part_id)
        with self._ready:
            if frame is None:
                self._counts.no_frame += 1
            elif len(self._pending) >= self._max_pending:
                self._counts.overflow += 1
            else:
                self._pending.append(dataclasses.replace(frame, part_id=part_id))
                self._judged_at[part_id] = now
                self._counts.judged += 1
                self._ready.notify_all()
                return
        if frame is None:
            self._throttle.warning("no_frame", "MQTT trigger for part %r but no frame available: not judged", part_id)
        else:
            self._throttle.warning(
                "overflow", "agent %d triggers behind: part %r not judged", self._max_pending, part_id
            )

    def _grab_frame(self, part_id: str) -> Capture | None:
        try:
            return self._grab()
        except Exception as exc:
            self._throttle.warning("grab", "grabbing a frame for part %r failed: %s", part_id, exc, exc_info=exc)
            return None

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            self._throttle.warning("connect", "MQTT broker refused the trigger: %s", reason)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: list[ReasonCode], properties: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            self._throttle.warning("subscribe", "MQTT broker refused the trigger subscription to %s", self.topic)
            return
        logger.info("MQTT trigger listening on %s", self.topic)
        self._subscribed.set()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags, reason: ReasonCode, properties: Any
    ) -> None:
        self._subscribed.clear()
        if reason.is_failure:
            self._throttle.warning("disconnect", "MQTT trigger lost the broker (%s); reconnecting", reason)
