"""RELIABILITY.md 20: the logs of the gateway, the camera agent and the review app, each run as a plant runs
it (``lineqa serve``, ``lineqa camera``, ``lineqa review serve``, at DEBUG with ``-v``) through their normal
and their error paths, hold no camera token, no RTSP password, no review password, session id or CSRF
token, and no image bytes; what they log from outside is escaped (one record, one line).

The agent reads an RTSP stream whose URL carries a password (the loopback RTSP server of the camera tests),
then one that is not there; the gateway gets good frames, bad frames, unknown recipes, a camera it is not
for, missing, forged and revoked tokens; the review app a wrong password, a good one, another tenant's page,
a form without its CSRF token, a decision and a sign-out.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import httpx2 as httpx
import pytest
from google.protobuf.text_encoding import CEscape

from lineqa import logs
from lineqa.datasets.synth import Surface, generate_part
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2_grpc as pb_grpc
from lineqa.serving.access import AccessStore
from lineqa.serving.database import open_database, sqlite_url
from lineqa.serving.embedded_triton import free_port
from lineqa.serving.local_plant import LocalPlant, provision_local_plant
from lineqa.serving.model_repository import ModelRepository
from lineqa.serving.readiness import wait_until_serving
from tests.camera.test_rtsp import RtspServer, _clip
from tests.helpers.processes import stop
from tests.review.conftest import PASSWORD, csrf_of, make_site

pytestmark = pytest.mark.slow

RTSP_PASSWORD = "Opr-4711-s3cret"


def image_markers(data: bytes) -> list[str]:
    """How an image's bytes would look in a log line: a piece from the middle of its Python repr, hex, base64,
    protobuf text (a logged message) and raw text."""
    encodings = [repr(data)[2:-1], data.hex(), base64.b64encode(data).decode(), CEscape(data, as_utf8=False),
                 data.decode("latin-1")]  # fmt: skip
    return [text[len(text) // 2 : len(text) // 2 + 24] for text in encodings]


def assert_clean(log: str, secrets: dict[str, str], images: list[bytes], what: str) -> None:
    assert log.strip(), f"{what} logged nothing: the scan would prove nothing"
    for name, secret in secrets.items():
        assert secret and secret not in log, f"{what}'s log holds the {name}"
    for data in images:
        for marker in image_markers(data):
            assert marker not in log, f"{what}'s log holds image bytes ({marker!r})"


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> LocalPlant:
    home = tmp_path_factory.mktemp("hygiene") / "home"
    ModelRepository(home / "models").add_version("metal", tiny_models["yolo11n"])
    return provision_local_plant(home, tenant="acme", cameras=("cam-1", "cam-2"),
                                 recipes={"r": "id: r\nmodel: {name: metal}\n"})  # fmt: skip


@pytest.fixture(scope="module")
def gateway(plant: LocalPlant, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``lineqa serve -v`` on the plant's home: (address, its log file)."""
    port, log = free_port(), tmp_path_factory.mktemp("gateway-log") / "serve.log"
    cmd = [sys.executable, "-m", "lineqa.cli", "serve", "-v", "--home", str(plant.home), "--port", str(port),
           "--metrics-port", "0"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_serving(f"localhost:{port}", plant.channel_credentials(), 120, process=process, log=log)
        yield f"localhost:{port}", log
    finally:
        stop(process)


def frame(sequence: int, data: bytes, camera: str = "cam-1", recipe: str = "r") -> pb.StreamInspectRequest:
    identity = pb.FrameIdentity(camera_id=camera, line_id="line-1", sequence=sequence, part_id=f"P\n{sequence}")
    image = pb.Image(encoding=pb.IMAGE_ENCODING_PNG, data=data)
    return pb.StreamInspectRequest(frame=pb.Frame(identity=identity, recipe_id=recipe, image=image))


def test_the_gateways_log_holds_no_token_and_no_image(plant: LocalPlant, gateway: tuple[str, Path]) -> None:
    address, log = gateway
    good = bytes(cv2.imencode(".png", generate_part(Surface.METAL, 7).image)[1])
    engine = open_database(sqlite_url(plant.home / "lineqa.db"))
    revoked = AccessStore(engine).issue_token("acme", "cam-2").token
    AccessStore(engine).revoke_token(revoked.split("_")[1])
    engine.dispose()
    forged = plant.tokens["cam-1"][:-6] + "AAAAAA"
    calls = [  # token, frames: normal path, then every error path a camera can take
        (plant.tokens["cam-1"], [frame(1, good), frame(2, good[:300]), frame(3, good, recipe="no-such\nrecipe"),
                                 frame(4, b"GIF89a" + good[:40]), frame(5, good, recipe="r")]),
        (plant.tokens["cam-1"], [frame(6, good, camera="cam-2")]),  # not its camera
        (None, [frame(7, good)]),
        (forged, [frame(8, good)]),
        (revoked, [frame(9, good, camera="cam-2")]),
    ]  # fmt: skip
    with grpc.secure_channel(address, plant.channel_credentials()) as channel:
        stub = pb_grpc.InspectionServiceStub(channel)
        for token, frames in calls:
            metadata = (("authorization", f"Bearer {token}"),) if token else None
            with contextlib.suppress(grpc.RpcError):  # refused calls are part of the run
                list(stub.StreamInspect(iter(frames), metadata=metadata, timeout=60))
    time.sleep(0.5)
    text = log.read_text()
    assert "refused" in text and "DEBUG" in text  # the error paths were logged, at DEBUG level
    tokens = {f"token of {camera}": token for camera, token in plant.tokens.items()}
    secrets = {**tokens, "forged token": forged, "revoked token": revoked}
    secrets |= {f"secret of {name}": token.split("_", 2)[2] for name, token in secrets.items()}
    assert_clean(text, secrets, [good], "the gateway")
    assert "'no-such\\nrecipe'" in text and not re.search(r"^recipe'", text, re.MULTILINE)  # escaped: one line


@pytest.fixture
def rtsp(tmp_path: Path) -> Iterator[str]:
    """An RTSP stream on loopback whose URL carries a user and a password (the server takes any)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("no ffmpeg on PATH to serve a live stream on loopback (Debian: apt-get install ffmpeg)")
    server = RtspServer(ffmpeg, free_port(), tmp_path)
    server.start(_clip(tmp_path / "clip.avi", (320, 240)))
    try:
        yield server.url.replace("rtsp://", f"rtsp://operator:{RTSP_PASSWORD}@")
    finally:
        server.stop()


def run_agent(plant: LocalPlant, address: str, source: str, work: Path, seconds: float) -> str:
    """``lineqa camera -v`` for ``seconds``, then SIGTERM; what it logged."""
    token = work / "token"
    token.write_text(plant.tokens["cam-1"])
    cmd = [sys.executable, "-m", "lineqa.cli", "camera", "-v", "--home", str(plant.home), "--gateway", address,
           "--token-file", str(token), "--tenant", "acme", "--line", "line-1", "--camera", "cam-1", "--recipe", "r",
           "--source", source, "--trigger", "rate", "--rate", "4", "--jsonl", str(work / "verdicts.jsonl"),
           "--no-console", "--spool-dir", str(work / "spool")]  # fmt: skip
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(seconds)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    return output


def test_the_agents_log_holds_no_password_and_no_token(
    plant: LocalPlant, gateway: tuple[str, Path], rtsp: str, tmp_path: Path
) -> None:
    address, _ = gateway
    (tmp_path / "live").mkdir()
    live = run_agent(plant, address, rtsp, tmp_path / "live", 8)
    assert (tmp_path / "live" / "verdicts.jsonl").read_text().count("\n") >= 3, live  # frames did flow
    (tmp_path / "gone").mkdir()
    port = free_port()  # nothing listens there: the stream cannot open, the agent retries
    gone = run_agent(plant, address, f"rtsp://operator:{RTSP_PASSWORD}@127.0.0.1:{port}/live", tmp_path / "gone", 4)
    assert "next attempt" in gone and "***@127.0.0.1" in gone  # the error path was taken, the URL redacted
    secrets = {"RTSP password": RTSP_PASSWORD, "camera token": plant.tokens["cam-1"]}
    assert_clean(live + gone, secrets, [], "the camera agent")


def test_the_review_apps_log_holds_no_password_session_or_csrf_token(tmp_path: Path) -> None:
    from lineqa.serving.pki import PlantPki

    home = tmp_path / "home"
    home.mkdir()
    site = make_site(sqlite_url(home / "lineqa.db"), home)
    site.app.state.services.engine.dispose()
    pki = PlantPki(home / "pki")
    pki.init(["localhost", "127.0.0.1"])
    port = free_port()
    cmd = [sys.executable, "-m", "lineqa.cli", "review", "-v", "--home", str(home), "serve", "--port", str(port)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[str, str] = {"password": PASSWORD}
    try:
        with httpx.Client(base_url=f"https://localhost:{port}", verify=str(pki.ca_cert), timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    page = client.get("/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "lineqa review serve did not start"
                    time.sleep(0.3)
            login = csrf_of(page.text.split('action="/login"', 1)[1])
            seen["login CSRF token"] = login
            wrong = client.post("/login", data={"username": "qa\nINFO forged line", "password": "not it",
                                                "csrf_token": login, "next": "/"})  # fmt: skip
            assert wrong.status_code == 401
            seen["second login CSRF token"] = csrf_of(wrong.text.split('action="/login"', 1)[1])
            signed = client.post("/login", data={"username": "qa", "password": PASSWORD, "next": "/",
                                                 "csrf_token": seen["second login CSRF token"]})  # fmt: skip
            assert signed.status_code == 303
            seen["session id"] = client.cookies["lineqa_session"]
            record = site.parts["acme"][0]
            part = client.get(f"/t/acme/parts/{record}")
            seen["session CSRF token"] = csrf_of(part.text)
            assert client.get("/t/globex/queue").status_code == 404
            assert client.post(f"/t/acme/parts/{record}/decisions", data={"kind": "confirm"}).status_code == 403
            decided = client.post(
                f"/t/acme/parts/{record}/decisions",
                data={"kind": "confirm", "reason": "ok", "csrf_token": seen["session CSRF token"]},
            )
            assert decided.status_code == 303, decided.text
            assert client.post("/logout", data={"csrf_token": seen["session CSRF token"]}).status_code == 303
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "failed sign-in" in output  # an error path was logged
    assert not re.search(r"^INFO forged line", output, re.MULTILINE)  # the user name's newline stayed escaped
    assert_clean(output, seen, [], "the review app")


def test_log_records_are_one_line_whatever_they_carry() -> None:
    """The formatter every lineqa command logs through escapes control characters of the message."""
    record = logging.LogRecord("lineqa.test", logging.WARNING, __file__, 1, "part %s from %s", ("A1\nFAIL", "x\x1b[2J"),
                               None)  # fmt: skip
    line = logs.EscapingFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING part A1\\nFAIL from x\\x1b[2J"
    assert "\n" not in logs.escape("\r\n\t\x00\u2028") and logs.escape("plain") == "plain"
    assert os.linesep not in line
