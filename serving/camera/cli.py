"""``lineqa camera``: stream a camera's frames to the gateway and put its verdicts where the line needs them.

    lineqa camera --gateway gateway.plant.local:50051 --ca ca.pem --token-file cam-07.token \\
        --tenant acme --line press-3 --camera cam-07 --recipe bracket-a \\
        --source rtsp://10.0.0.21/stream1 --trigger mqtt --mqtt 10.0.0.2:1883 \\
        --jsonl verdicts.jsonl --mqtt-verdicts

Sources: a folder of images, a video file, ``rtsp://``/``http://`` streams, ``usb:0``, ``synthetic:metal``.
Triggers: ``every`` frame the source gives, a fixed ``--rate``, or ``mqtt`` part-in-position messages
carrying the part id. Frames are spooled on disk before they are sent, so none is lost while the gateway is
unreachable; their sequence numbers survive restarts (``--spool-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

from lineqa.home import default_home
from lineqa.serving.camera.agent import CameraAgent, GatewayTarget, GoldenSample, StreamSettings
from lineqa.serving.camera.console import ConsoleSink
from lineqa.serving.camera.hot_folder import HotFolderSettings
from lineqa.serving.camera.model import Capture, Context, FrameSource, VerdictSink
from lineqa.serving.camera.mqtt import MqttSink, MqttTrigger
from lineqa.serving.camera.pacing import Backoff
from lineqa.serving.camera.retry import RetryPolicy, TransientAnswer
from lineqa.serving.camera.sinks import JsonLinesSink, SinkSet
from lineqa.serving.camera.sources import is_folder_spec, open_source
from lineqa.serving.camera.spool import Spool, SpoolFullPolicy
from lineqa.serving.camera.triggers import LatestFrame, RateTrigger
from lineqa.serving.errors import ServingError

logger = logging.getLogger(__name__)


class CameraConfigError(ServingError):
    """The camera's options do not make a runnable agent."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--home", type=Path, help="lineqa home (default: $LINEQA_HOME or ~/.lineqa)")
    parser.add_argument("--gateway", default="localhost:50051", help="gateway host:port (default localhost:50051)")
    parser.add_argument("--ca", type=Path, help="CA certificate the gateway's is signed by (default <home>/pki/ca.pem)")
    parser.add_argument("--cert", type=Path, help="client certificate, for a gateway that requires mutual TLS")
    parser.add_argument("--key", type=Path, help="client key, for mutual TLS")
    parser.add_argument("--plaintext", action="store_true", help="no TLS: only for a gateway on a trusted host")
    parser.add_argument("--token-file", type=Path, help="file holding the camera token (or $LINEQA_CAMERA_TOKEN)")
    parser.add_argument("--tenant", required=True, help="tenant id (for MQTT topics and verdict payloads)")
    parser.add_argument("--line", required=True, help="production line id")
    parser.add_argument("--camera", required=True, help="camera id (as registered with 'lineqa admin camera add')")
    parser.add_argument("--recipe", required=True, help="recipe id that judges this camera's parts")
    parser.add_argument(
        "--reference",
        type=Path,
        help="golden sample: a JPEG/PNG of a good part, sent to the gateway once per stream and named by every "
        "frame (it replaces the recipe's; a model trained on pairs needs one here or in the recipe)",
    )
    parser.add_argument("--source", required=True, help="folder, video file, rtsp://..., usb:0, synthetic:metal")
    parser.add_argument(
        "--loop", action="store_true", help="repeat a video file, or replay a folder's images over and over (a demo)"
    )
    parser.add_argument("--done-dir", type=Path, help="hot folder: move each judged file here")
    parser.add_argument("--error-dir", type=Path, help="hot folder: move files not judged (final ERROR, unreadable)")
    parser.add_argument("--watch", action="store_true", help="hot folder: keep watching for new files until stopped")
    parser.add_argument("--settle-s", type=float, help="hot folder: take a file once unchanged this long (default 1 s)")
    parser.add_argument("--count", type=int, help="stop a synthetic source after this many parts")
    parser.add_argument("--fps", type=float, help="pace a folder, video file or synthetic source (frames/s)")
    parser.add_argument("--trigger", choices=["every", "rate", "mqtt"], default="every")
    parser.add_argument("--rate", type=float, default=2.0, help="frames per second for --trigger rate")
    parser.add_argument("--mqtt", help="MQTT broker host:port (for --trigger mqtt and --mqtt-verdicts)")
    parser.add_argument("--trigger-topic", help="part-in-position topic (default lineqa/<tenant>/<line>/trigger)")
    parser.add_argument("--mqtt-verdicts", action="store_true", help="publish verdicts and status to MQTT")
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per verdict to this file")
    parser.add_argument("--no-console", action="store_true", help="no live console view")
    parser.add_argument("--spool-dir", type=Path, help="spool folder (default <home>/spool)")
    parser.add_argument("--spool-max-frames", type=int, default=10_000)
    parser.add_argument(
        "--spool-full",
        choices=[p.value for p in SpoolFullPolicy],
        default="block",
        help="when the spool is full: block the trigger, or drop the oldest frame (counted)",
    )
    parser.add_argument("--window", type=int, default=8, help="frames in flight on the stream")
    parser.add_argument(
        "--on-transient-error",
        choices=[a.value for a in TransientAnswer],
        default="answer",
        help="model down or slow, storage failing: hand the ERROR on at once as the part's answer and the late "
        "verdict after (answer, default), or hand on nothing until judged (wait: no gate waiting)",
    )
    parser.add_argument("--retry-max-s", type=float, default=30.0, help="longest wait between retries of a frame")
    parser.add_argument("--keepalive-s", type=float, default=10.0, help="ping the gateway this often (seconds)")
    parser.add_argument(
        "--stream-deadline-s", type=float, default=300.0, help="each stream call ends by then; a new one is opened"
    )


def _broker(args: argparse.Namespace) -> tuple[str, int]:
    if not args.mqtt:
        raise CameraConfigError("--trigger mqtt and --mqtt-verdicts need --mqtt host:port")
    host, _, port = args.mqtt.rpartition(":")
    if not host or not port.isdigit():
        raise CameraConfigError(f"--mqtt {args.mqtt!r} is not host:port")
    return host, int(port)


def _target(args: argparse.Namespace, home: Path) -> GatewayTarget:
    token = os.environ.get("LINEQA_CAMERA_TOKEN", "")
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise CameraConfigError(f"cannot read the token file {args.token_file}: {exc.strerror}") from None
    if not token:
        raise CameraConfigError("no camera token: give --token-file or set LINEQA_CAMERA_TOKEN")
    if args.plaintext:
        return GatewayTarget(args.gateway, None, token)
    ca = args.ca or home / "pki" / "ca.pem"
    if not ca.is_file():
        raise CameraConfigError(f"no CA certificate at {ca}: give --ca (or --plaintext for a trusted local gateway)")
    client = (args.key.read_bytes(), args.cert.read_bytes()) if args.cert and args.key else (None, None)
    credentials = grpc.ssl_channel_credentials(ca.read_bytes(), private_key=client[0], certificate_chain=client[1])
    return GatewayTarget(args.gateway, credentials, token)


def _hot_folder(args: argparse.Namespace) -> HotFolderSettings | None:
    if not (args.done_dir or args.error_dir or args.watch or args.settle_s is not None):
        return None
    settle_s = 1.0 if args.settle_s is None else args.settle_s
    return HotFolderSettings(done_dir=args.done_dir, error_dir=args.error_dir, watch=args.watch, settle_s=settle_s)


def _source(args: argparse.Namespace, context: Context, spool: Spool) -> FrameSource:
    options: dict[str, object] = {"loop": args.loop} if args.loop else {}
    if args.count is not None:
        options["count"] = args.count
    if args.fps is not None:
        options["rate_fps"] = args.fps
    hot = _hot_folder(args)
    if is_folder_spec(args.source) and not args.loop:
        if args.trigger != "every":
            raise CameraConfigError(
                "a folder source gives every file once (pace it with --fps); --trigger rate and mqtt take frames "
                "from a camera or video (or a folder replayed with --loop)"
            )
        options["spool"] = spool
        if hot is not None:
            options["hot"] = hot
    elif hot is not None:
        raise CameraConfigError("--done-dir, --error-dir, --watch and --settle-s apply to a folder without --loop")
    source = open_source(args.source, **options)
    if args.trigger == "rate":
        return RateTrigger(source, args.rate)
    if args.trigger == "mqtt":
        host, port = _broker(args)
        topic = args.trigger_topic or f"lineqa/{context.tenant}/{context.line}/trigger"
        latest = LatestFrame(source)
        return _TriggeredSource(MqttTrigger(host, port, topic, latest.grab), latest)
    return source


class _TriggeredSource:
    """A part-in-position trigger and the frame reader behind it, closed together."""

    def __init__(self, trigger: MqttTrigger, latest: LatestFrame) -> None:
        self.trigger = trigger
        self.latest = latest

    def captures(self) -> Iterator[Capture]:
        return self.trigger.captures()

    def close(self) -> None:
        self.trigger.close()
        self.latest.close()


def _sinks(args: argparse.Namespace, context: Context) -> SinkSet:
    sinks: list[VerdictSink] = []
    if args.jsonl:
        sinks.append(JsonLinesSink(args.jsonl, context))
    if args.mqtt_verdicts:
        host, port = _broker(args)
        sinks.append(MqttSink(host, port, context))
    if not args.no_console:
        sinks.append(ConsoleSink(context))
    return SinkSet(sinks, logger)


async def _run(agent: CameraAgent, source: FrameSource) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(source, stop)


def run(args: argparse.Namespace) -> int:
    home = args.home or default_home()
    context = Context(args.tenant, args.line, args.camera)
    target = _target(args, home)
    try:
        stream = StreamSettings(window=args.window, keepalive_s=args.keepalive_s, deadline_s=args.stream_deadline_s)
        retry = RetryPolicy(TransientAnswer(args.on_transient_error), Backoff(initial_s=1.0, max_s=args.retry_max_s))
    except ValueError as exc:
        raise CameraConfigError(str(exc)) from None
    golden = GoldenSample.read(args.reference) if args.reference else None
    spool = Spool(
        (args.spool_dir or home / "spool") / f"{args.tenant}-{args.camera}.db",
        max_frames=args.spool_max_frames,
        policy=SpoolFullPolicy(args.spool_full),
    )
    try:
        source = _source(args, context, spool)
        sinks = _sinks(args, context)
    except BaseException:
        spool.close()
        raise
    agent = CameraAgent(target, context, args.recipe, spool, sinks, stream=stream, retry=retry, golden=golden)
    try:
        asyncio.run(_run(agent, source))
    finally:
        sinks.close()
        spool.close()
    status = agent.status
    print(
        f"lineqa camera {args.camera}: {status.judged} judged, verdicts handed on {status.verdicts} "
        f"({status.late} late), {status.spooled} still spooled ({status.retrying} waiting for a retry), "
        f"{status.dropped} dropped",
        file=sys.stderr,
    )
    return 0
