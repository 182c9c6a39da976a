"""SIGTERM to ``lineqa serve`` during a stream: health goes NOT_SERVING, a new stream is refused, the stream stops
taking frames, the ones in flight are judged and recorded and their results delivered, the stream ends cleanly,
and the process exits 0 within its grace period (RELIABILITY.md 5). Nothing acknowledged is missing from the
database."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import grpc
import pytest

from lineqa.datasets.synth import Surface, generate_part
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import health_status, wait_until_serving

pytestmark = pytest.mark.slow


def test_sigterm_mid_stream_loses_nothing(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    ModelRepository(tmp_path / "models").add_version("metal", tiny_models["yolo11n"])
    recipes = {"r": "id: r\nmodel: {name: metal}\n"}
    plant = provision_local_plant(tmp_path, cameras=("cam",), recipes=recipes)  # TLS with the plant certificate
    port = free_port()
    address = f"localhost:{port}"
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "--port", str(port), "--home", str(tmp_path)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(address, plant.channel_credentials(), 90, process=server)
        image = cv2.imencode(".png", generate_part(Surface.METAL, 3).image)[1].tobytes()
        sent: list[int] = []
        draining: dict[str, str] = {}

        def observe_drain() -> None:
            """Once SIGTERM is sent: health must say NOT_SERVING within 2 s, and a new stream be refused."""
            with grpc.secure_channel(address, plant.channel_credentials()) as channel:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and draining.get("health") != "NOT_SERVING":
                    draining["health"] = health_status(channel, 0.5)
                stub = pb_grpc.InspectionServiceStub(channel)
                identity = pb.FrameIdentity(camera_id="cam", line_id="line-1", sequence=10_000)
                image_msg = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=image)
                frame = pb.Frame(identity=identity, recipe_id="r", image=image_msg)
                try:
                    list(stub.StreamInspect(iter([pb.StreamInspectRequest(frame=frame)]),
                                            metadata=plant.call_metadata("cam"), timeout=10))  # fmt: skip
                    draining["new stream"] = "accepted"
                except grpc.RpcError as exc:
                    draining["new stream"] = exc.code().name

        async def run() -> list[pb.InspectionResult]:
            observer: asyncio.Task[None] | None = None
            async with grpc.aio.secure_channel(address, plant.channel_credentials()) as channel:
                stub = pb_grpc.InspectionServiceStub(channel)

                async def frames() -> AsyncIterator[pb.StreamInspectRequest]:
                    nonlocal observer
                    for sequence in range(1, 200):
                        identity = pb.FrameIdentity(camera_id="cam", line_id="line-1", sequence=sequence)
                        image_msg = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=image)
                        sent.append(sequence)
                        yield pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id="r", image=image_msg))
                        if sequence == 15:
                            server.send_signal(signal.SIGTERM)
                            observer = asyncio.create_task(asyncio.to_thread(observe_drain))
                        await asyncio.sleep(0.05)

                call = stub.StreamInspect(frames(), metadata=plant.call_metadata("cam"))
                results = [response.result async for response in call]
                if observer is not None:
                    await observer
                return results

        started = time.monotonic()
        results = asyncio.run(run())
        exit_code = server.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stdout.read() if server.stdout else ""
    assert exit_code == 0, log[-3000:]
    assert draining == {"health": "NOT_SERVING", "new stream": "UNAVAILABLE"}, draining
    assert elapsed < 25, f"shutdown took {elapsed:.1f} s"
    assert len(sent) < 199, "the stream was never ended by the server"
    judged = [r for r in results if r.verdict != pb.VERDICT_ERROR]
    # The server reads frames in order and stops reading when it drains: the frames it answered are exactly
    # the first k sent (each once, all judged); the rest were never taken and are the client's to resend.
    sequences = sorted(r.frame.sequence for r in results)
    assert sequences == list(range(1, len(results) + 1)) and len(judged) == len(results)
    assert len(results) >= 10, f"only {len(results)} frames answered before the drain"
    with sqlite3.connect(tmp_path / "lineqa.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {row[0] for row in db.execute("SELECT record_id FROM inspections")}
    assert {r.record_id for r in judged} == stored  # every acknowledged verdict is recorded, nothing extra
