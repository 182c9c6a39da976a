"""Live streams on loopback, served from Debian's ffmpeg: frames flow, the server dies, the source keeps
retrying, the server comes back (at another frame size) and frames flow again.

Debian's ffmpeg can publish to an RTSP server but cannot be one (``-rtsp_flags listen`` only receives), so
the RTSP tests run a minimal RTSP server here: ffmpeg encodes a clip to MJPEG RTP packets and the server
relays them to the player, interleaved on the RTSP connection. It answers a UDP SETUP with 461, which makes
OpenCV's FFmpeg fall back to TCP as it would against a camera that only offers TCP. The HTTP test uses
ffmpeg's own HTTP server (``-listen 1``) streaming multipart JPEG, like an IP camera's MJPEG URL.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.serving.camera.model import Capture
from lineqa.serving.camera.sources import Backoff, VideoSource
from lineqa.vision.image import decode_image

RETRY = Backoff(initial_s=0.2, max_s=0.4)
SOURCES_LOGGER = "lineqa.serving.camera.sources"


@pytest.fixture
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("no ffmpeg on PATH to serve a live stream on loopback (Debian: apt-get install ffmpeg)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clip(path: Path, size: tuple[int, int], frames: int = 20) -> Path:
    """An MJPG .avi of moving bars, so consecutive frames differ as a camera's do."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 40, np.uint8)
        x = i * size[0] // frames
        image[:, x : x + size[0] // 8] = (0, 200, 255)
        writer.write(image)
    writer.release()
    return path


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Reader:
    """Iterates a source in a thread, as the camera agent does, keeping every capture."""

    def __init__(self, source: VideoSource) -> None:
        self.source = source
        self.captures: list[Capture] = []
        self.thread = threading.Thread(target=lambda: self.captures.extend(source.captures()), daemon=True)
        self.thread.start()

    def close(self) -> float:
        """Close the source; how long the reading thread took to end."""
        start = time.monotonic()
        self.source.close()
        self.thread.join(10)
        return time.monotonic() - start


@pytest.fixture
def read() -> Iterator[Callable[[VideoSource], Reader]]:
    """Start reading a source in a thread; every source is closed after the test, failed or not."""
    readers: list[Reader] = []

    def start(source: VideoSource) -> Reader:
        readers.append(Reader(source))
        return readers[-1]

    yield start
    for reader in readers:
        reader.close()


class RtspServer:
    """One RTSP stream at rtsp://127.0.0.1:<port>/live, relayed from ffmpeg's RTP output (see module docs)."""

    def __init__(self, ffmpeg: str, port: int, workdir: Path) -> None:
        self.ffmpeg, self.port, self.workdir = ffmpeg, port, workdir
        self.url = f"rtsp://127.0.0.1:{port}/live"
        self._send_lock = threading.Lock()
        self._players: set[socket.socket] = set()
        self._encoder: subprocess.Popen[bytes] | None = None
        self._sdp = ""
        self._running = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def start(self, clip: Path) -> None:
        """Start encoding ``clip`` and accepting players."""
        self._running.set()
        rtp = self._socket(socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        self._encode(clip, rtp.getsockname()[1])
        listener = self._socket(socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._spawn(self._pump, rtp)
        self._spawn(self._accept, listener)

    def switch(self, clip: Path) -> None:
        """Replace the encoder mid-session: players stay connected and the picture changes (size) under them."""
        rtp = next(s for s in self._sockets if s.type == socket.SOCK_DGRAM)
        self._stop_encoder()
        self._encode(clip, rtp.getsockname()[1])

    def stop(self) -> None:
        """Kill the stream as a camera reboot would: encoder gone, every connection closed, port free."""
        self._running.clear()
        self._stop_encoder()
        for thread in self._threads:
            thread.join(5)
        for sock in self._sockets:
            sock.close()
        self._threads, self._sockets = [], []
        self._players.clear()

    def _socket(self, kind: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.settimeout(0.1)
        self._sockets.append(sock)
        return sock

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(sock,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def _encode(self, clip: Path, rtp_port: int) -> None:
        sdp = self.workdir / "stream.sdp"
        sdp.unlink(missing_ok=True)
        # RFC 2435 (JPEG over RTP) allows only the standard Huffman tables and 4:2:0 or 4:2:2 sampling.
        command = [self.ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-re", "-stream_loop", "-1"]
        command += ["-i", str(clip), "-an", "-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p"]
        command += ["-f", "rtp", "-sdp_file", str(sdp), f"rtp://127.0.0.1:{rtp_port}"]
        log = (self.workdir / "ffmpeg.log").open("ab")
        self._encoder = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _wait(lambda: sdp.is_file() and "m=video" in sdp.read_text(), 10, "ffmpeg's SDP")
        self._sdp = sdp.read_text().strip() + "\r\na=control:streamid=0\r\n"

    def _stop_encoder(self) -> None:
        if self._encoder is not None:
            self._encoder.kill()
            self._encoder.wait()
            self._encoder = None

    def _pump(self, rtp: socket.socket) -> None:
        while self._running.is_set():
            try:
                packet = rtp.recv(65536)
            except TimeoutError:
                continue
            frame = b"$\x00" + len(packet).to_bytes(2, "big") + packet  # interleaved on channel 0
            for player in list(self._players):
                try:
                    with self._send_lock:
                        player.sendall(frame)
                except OSError:
                    self._players.discard(player)

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.1)
            self._sockets.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        pending = b""
        while self._running.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            pending = self._answer(conn, pending + data)

    def _answer(self, conn: socket.socket, pending: bytes) -> bytes:
        """Answer every complete request in ``pending``; skip the player's interleaved RTCP; return the rest."""
        while pending:
            if pending.startswith(b"$"):
                size = 4 + int.from_bytes(pending[2:4], "big")
                if len(pending) < size:
                    break
                pending = pending[size:]
                continue
            head, separator, rest = pending.partition(b"\r\n\r\n")
            if not separator:
                break
            lines = head.decode().split("\r\n")
            method, url = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            body_size = int(headers.get("content-length", "0"))
            if len(rest) < body_size:
                break
            pending = rest[body_size:]
            self._respond(conn, method, url, headers)
        return pending

    def _respond(self, conn: socket.socket, method: str, url: str, headers: dict[str, str]) -> None:
        status, extra, body = "200 OK", "", ""
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE":
            body = self._sdp
            extra = f"Content-Base: {url}/\r\nContent-Type: application/sdp\r\n"
        elif method == "SETUP" and "TCP" not in headers.get("transport", ""):
            status = "461 Unsupported Transport"
        elif method == "SETUP":
            extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: 4711\r\n"
        elif method in ("PLAY", "GET_PARAMETER"):
            extra = "Session: 4711\r\n"
        reply = f"RTSP/1.0 {status}\r\nCSeq: {headers.get('cseq', '0')}\r\n{extra}"
        reply += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        with self._send_lock:
            conn.sendall(reply.encode())
        if method == "PLAY":
            self._players.add(conn)


@pytest.fixture
def rtsp_server(ffmpeg: str, tmp_path: Path) -> Iterator[RtspServer]:
    server = RtspServer(ffmpeg, _free_port(), tmp_path)
    yield server
    server.stop()


def _sizes(captures: list[Capture]) -> list[tuple[int, int]]:
    """The distinct frame sizes in order of appearance."""
    sizes: list[tuple[int, int]] = []
    for capture in captures:
        if not sizes or sizes[-1] != (capture.width, capture.height):
            sizes.append((capture.width, capture.height))
    return sizes


def _check_frames(captures: list[Capture], name: str) -> None:
    assert [c.part_id for c in captures] == [f"{name}-{i}" for i in range(len(captures))]
    for capture in captures[:: max(1, len(captures) // 10)]:
        assert decode_image(capture.data).shape == (capture.height, capture.width, 3)


def _attempts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("next attempt in" in record.getMessage() for record in caplog.records)


def test_rtsp_drop_reconnect_and_new_frame_size(
    rtsp_server: RtspServer, read: Callable[[VideoSource], Reader], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SOURCES_LOGGER)
    rtsp_server.start(_clip(tmp_path / "vga.avi", (320, 240)))
    source = VideoSource(rtsp_server.url, reconnect=RETRY, open_timeout_s=5, read_timeout_s=2)
    reader = read(source)
    _wait(lambda: len(reader.captures) >= 5, 20, "frames over RTSP")

    rtsp_server.stop()
    _wait(lambda: source.drops == 1, 10, "the drop to be noticed")
    seen = len(reader.captures)
    _wait(lambda: _attempts(caplog) >= 3, 10, "reconnect attempts while the server is down")
    assert source.reconnects == 0 and len(reader.captures) == seen
    assert "stream dropped after" in caplog.text

    rtsp_server.start(_clip(tmp_path / "small.avi", (160, 120)))
    _wait(lambda: len(reader.captures) >= seen + 5, 20, "frames after the server came back")
    assert reader.close() < 3
    assert (source.drops, source.reconnects, source.size_changes) == (1, 1, 1)
    assert _sizes(reader.captures) == [(320, 240), (160, 120)]
    assert "reconnected after" in caplog.text and "frame size changed from 320x240 to 160x120" in caplog.text
    _check_frames(reader.captures, "127.0.0.1")


def test_rtsp_larger_frames_mid_session(
    rtsp_server: RtspServer, read: Callable[[VideoSource], Reader], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a larger frame in the same session OpenCV repeats the last old-size frame: the source passes no
    repeat on, sees the picture frozen and reopens the stream, which gives the new size."""
    caplog.set_level(logging.INFO, logger=SOURCES_LOGGER)
    rtsp_server.start(_clip(tmp_path / "small.avi", (160, 120)))
    source = VideoSource(rtsp_server.url, reconnect=RETRY, open_timeout_s=5, read_timeout_s=1)
    reader = read(source)
    _wait(lambda: len(reader.captures) >= 5, 20, "frames over RTSP")
    rtsp_server.switch(_clip(tmp_path / "vga.avi", (320, 240)))
    _wait(lambda: reader.captures[-1].width == 320, 20, "frames of the new size")
    assert reader.close() < 3
    assert _sizes(reader.captures) == [(160, 120), (320, 240)]
    assert (source.drops, source.reconnects, source.size_changes) == (1, 1, 1)
    assert "picture frozen" in caplog.text
    pairs = itertools.pairwise(reader.captures)
    assert all(a.data != b.data for a, b in pairs), "a repeated frame was passed on"
    _check_frames(reader.captures, "127.0.0.1")


class HttpMjpegServer:
    """ffmpeg serving a clip as multipart JPEG over HTTP to one client (it exits when that client leaves)."""

    def __init__(self, ffmpeg: str, port: int, workdir: Path) -> None:
        self.ffmpeg, self.workdir = ffmpeg, workdir
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, clip: Path) -> None:
        command = [self.ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-re", "-stream_loop", "-1"]
        command += ["-i", str(clip), "-an", "-c:v", "mjpeg", "-f", "mpjpeg", "-listen", "1", self.url]
        log = (self.workdir / "ffmpeg-http.log").open("ab")
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def test_http_mjpeg_drop_and_reconnect(ffmpeg: str, read: Callable[[VideoSource], Reader], tmp_path: Path) -> None:
    server = HttpMjpegServer(ffmpeg, _free_port(), tmp_path)
    try:
        server.start(_clip(tmp_path / "vga.avi", (320, 240)))
        source = VideoSource(server.url, reconnect=RETRY, open_timeout_s=5, read_timeout_s=2)
        reader = read(source)
        _wait(lambda: len(reader.captures) >= 5, 20, "frames over HTTP")
        server.stop()
        _wait(lambda: source.drops == 1, 10, "the drop to be noticed")
        seen = len(reader.captures)
        server.start(_clip(tmp_path / "small.avi", (160, 120)))
        _wait(lambda: len(reader.captures) >= seen + 5, 20, "frames after the server came back")
        assert reader.close() < 3
    finally:
        server.stop()
    assert (source.drops, source.reconnects, source.size_changes) == (1, 1, 1)
    assert _sizes(reader.captures) == [(320, 240), (160, 120)]
    _check_frames(reader.captures, "127.0.0.1")
