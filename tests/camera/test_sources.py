"""Camera sources and triggers: folders, video files, synthetic parts, reconnects, the latest-frame holder."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Capture
from lineqa.serving.camera.sources import (
    Backoff,
    FolderSource,
    SourceError,
    SyntheticSource,
    VideoCaptureLike,
    VideoSource,
    open_source,
)
from lineqa.serving.camera.triggers import LatestFrame, RateTrigger
from lineqa.vision.image import decode_image

FAST = Backoff(initial_s=0.01, max_s=0.02)


def _image(width: int, height: int, value: int) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def _write(path: Path, value: int = 100, size: tuple[int, int] = (32, 24)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix.lower() if path.suffix.lower() != ".jpeg" else ".jpg", _image(*size, value))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _write_video(path: Path, frames: int, size: tuple[int, int] = (160, 120)) -> Path:
    """An MJPG .avi whose frame i is filled with grey level 10*i (distinct after JPEG round trips)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(_image(*size, 10 * i))
    writer.release()
    return path


def _grey(capture: Capture) -> float:
    return float(decode_image(capture.data).mean())


# --- folders -------------------------------------------------------------------------------------------------


def test_folder_natural_order_unchanged_bytes(tmp_path: Path) -> None:
    for name in ["img10.png", "img2.jpg", "IMG1.JPEG", "img3.PNG"]:
        _write(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    source = FolderSource(tmp_path)
    captures = list(source.captures())
    assert [c.part_id for c in captures] == ["IMG1", "img2", "img3", "img10"]
    assert [c.origin for c in captures] == ["IMG1.JPEG", "img2.jpg", "img3.PNG", "img10.png"]
    for capture in captures:
        assert capture.data == (tmp_path / capture.origin).read_bytes()
        assert (capture.width, capture.height) == (32, 24)
    assert [c.encoding for c in captures] == [
        pb.IMAGE_ENCODING_JPEG,
        pb.IMAGE_ENCODING_JPEG,
        pb.IMAGE_ENCODING_PNG,
        pb.IMAGE_ENCODING_PNG,
    ]


def test_folder_loop_and_pattern(tmp_path: Path) -> None:
    for name in ["a1.png", "a2.jpg", "sub/a3.png"]:
        _write(tmp_path / name)
    looped = FolderSource(tmp_path, loop=True).captures()
    assert [c.part_id for c in itertools.islice(looped, 5)] == ["a1", "a2", "a1", "a2", "a1"]
    assert [c.part_id for c in FolderSource(tmp_path, pattern="*.png").captures()] == ["a1"]
    assert [c.origin for c in FolderSource(tmp_path, pattern="**/*.png").captures()] == ["a1.png", "sub/a3.png"]


def test_folder_skips_unreadable_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path / "1.png")
    (tmp_path / "2.jpg").write_bytes(b"GIF89a not really")
    _write(tmp_path / "3.jpg")
    with caplog.at_level(logging.WARNING):
        assert [c.part_id for c in FolderSource(tmp_path).captures()] == ["1", "3"]
    assert "2.jpg" in caplog.text and "GIF" in caplog.text
    (tmp_path / "1.png").write_bytes(b"")
    (tmp_path / "3.jpg").unlink()
    assert list(FolderSource(tmp_path, loop=True).captures()) == []  # looping over nothing ends


def test_folder_pacing_and_prompt_close(tmp_path: Path) -> None:
    for i in range(4):
        _write(tmp_path / f"{i}.png")
    start = time.monotonic()
    assert len(list(FolderSource(tmp_path, rate_fps=20).captures())) == 4
    assert 0.12 < time.monotonic() - start < 1.0

    slow = FolderSource(tmp_path, loop=True, rate_fps=0.2)
    got: list[Capture] = []
    reader = threading.Thread(target=lambda: got.extend(slow.captures()))
    reader.start()
    time.sleep(0.2)
    start = time.monotonic()
    slow.close()
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - start < 0.5
    assert len(got) == 1


def test_folder_errors_name_the_spec(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    for spec, reason in [
        (tmp_path / "missing", "no such folder or file"),
        (tmp_path / "empty", "no .jpg/.jpeg/.png images"),
        (tmp_path / "text", "no .jpg/.jpeg/.png images"),
    ]:
        with pytest.raises(SourceError) as info:
            open_source(str(spec))
        message = str(info.value)
        assert str(spec) in message and reason in message and "\n" not in message
    with pytest.raises(SourceError, match=r"no \.jpg/\.jpeg/\.png images matching '\*\.bmp'"):
        FolderSource(tmp_path / "text", pattern="*.bmp")


# --- synthetic parts -----------------------------------------------------------------------------------------


def test_synthetic_is_deterministic_and_decodable() -> None:
    first = list(SyntheticSource("metal", seed=7, count=3, size=96).captures())
    again = list(SyntheticSource("metal", seed=7, count=3, size=96).captures())
    assert [c.part_id for c in first] == ["synthetic-7", "synthetic-8", "synthetic-9"]
    assert [c.data for c in first] == [c.data for c in again]
    assert len({c.data for c in first}) == 3
    for capture in first:
        assert capture.encoding == pb.IMAGE_ENCODING_JPEG
        assert decode_image(capture.data).shape == (96, 96, 3)
    pcb = next(iter(SyntheticSource("pcb", seed=7, count=1, size=96).captures()))
    assert pcb.data != first[0].data


# --- open_source ---------------------------------------------------------------------------------------------


def test_open_source_dispatch(tmp_path: Path) -> None:
    _write(tmp_path / "a.png")
    assert isinstance(open_source(str(tmp_path), loop=True), FolderSource)
    synthetic = open_source("synthetic:pcb", count=2, rate_fps=5.0)
    assert isinstance(synthetic, SyntheticSource) and synthetic.surface.value == "pcb" and synthetic.count == 2
    stream = open_source("rtsp://admin:secret@cam7.line:8554/stream1")
    assert isinstance(stream, VideoSource) and stream.live and stream.name == "cam7.line"
    assert "secret" not in stream.display and "cam7.line:8554" in stream.display
    assert isinstance(open_source("http://10.0.0.5/video.mjpg"), VideoSource)
    for spec, name in [("usb:0", "usb0"), ("/dev/video2", "usb2")]:
        device = open_source(spec)
        assert isinstance(device, VideoSource) and device.live and device.name == name
    video = open_source(str(_write_video(tmp_path / "clip.avi", 2)))
    assert isinstance(video, VideoSource) and not video.live and video.name == "clip"


@pytest.mark.parametrize(
    ("spec", "options", "message"),
    [
        ("synthetic:wood", {}, "unknown surface"),
        ("synthetic:metal", {"loop": True}, "loop does not apply"),
        ("usb:front", {}, "expected usb:<device index>"),
        ("rtsp://u:pw@cam/live", {"loop": True}, "pace a live source with a rate trigger"),
        ("rtsp://u:pw@cam/live", {"rate_fps": 2.0}, "pace a live source with a rate trigger"),
        ("synthetic:metal", {"rate_fps": -1.0}, "rate_fps must be positive"),
    ],
)
def test_open_source_refuses(spec: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(SourceError, match=message) as info:
        open_source(spec, **options)
    assert "pw@" not in str(info.value)


def test_unreadable_video_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(SourceError, match=r"broken\.avi.*cannot read it as a video"):
        open_source(str(bad))


# --- video files ---------------------------------------------------------------------------------------------


def test_video_file_frames_in_order_then_end(tmp_path: Path) -> None:
    source = VideoSource(_write_video(tmp_path / "clip.avi", 20))
    captures = list(source.captures())
    assert [c.part_id for c in captures] == [f"clip-{i}" for i in range(20)]
    assert [round(_grey(c) / 10) for c in captures] == list(range(20))
    assert {(c.width, c.height, c.encoding) for c in captures} == {(160, 120, pb.IMAGE_ENCODING_JPEG)}
    assert captures[3].origin.endswith("clip.avi#3")
    assert source.drops == source.reconnects == source.size_changes == 0


def test_video_file_loop_continues_the_index(tmp_path: Path) -> None:
    looped = VideoSource(_write_video(tmp_path / "clip.avi", 5), loop=True).captures()
    captures = list(itertools.islice(looped, 12))
    assert [c.part_id for c in captures] == [f"clip-{i}" for i in range(12)]
    assert [round(_grey(c) / 10) for c in captures] == [i % 5 for i in range(12)]


# --- live sources, with OpenCV's capture replaced by a scripted one ------------------------------------------


class ScriptedCapture:
    """A capture that fails to open (``frames`` None) or gives ``frames`` and then a failed read."""

    def __init__(self, frames: list[np.ndarray] | None) -> None:
        self.frames = frames
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.frames is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames:
            return True, self.frames.pop(0)
        return False, None

    def release(self) -> None:
        self.released = True


class ScriptedFactory:
    """Hands out the scripted captures in turn, then captures that fail to open."""

    def __init__(self, *script: list[np.ndarray] | None) -> None:
        self.script = list(script)
        self.opened: list[ScriptedCapture] = []

    def __call__(self, target: str | int, open_timeout_s: float, read_timeout_s: float) -> VideoCaptureLike:
        capture = ScriptedCapture(self.script.pop(0) if self.script else None)
        self.opened.append(capture)
        return capture


def _frames(count: int, size: tuple[int, int], first: int = 0) -> list[np.ndarray]:
    return [_image(*size, first + 10 * i) for i in range(count)]


def test_live_drop_reconnect_and_size_change(caplog: pytest.LogCaptureFixture) -> None:
    factory = ScriptedFactory(_frames(3, (64, 48)), None, [], _frames(2, (80, 60), first=100))
    source = VideoSource("rtsp://cam.local/live", reconnect=FAST, capture_factory=factory)
    with caplog.at_level(logging.INFO, logger="lineqa.serving.camera.sources"):
        captures = list(itertools.islice(source.captures(), 5))
    assert [c.part_id for c in captures] == [f"cam.local-{i}" for i in range(5)]
    assert [(c.width, c.height) for c in captures] == [(64, 48)] * 3 + [(80, 60)] * 2
    assert (source.drops, source.reconnects, source.size_changes) == (1, 1, 1)
    assert all(capture.released for capture in factory.opened)
    assert "stream dropped after 3 frames" in caplog.text
    assert "reconnected after" in caplog.text
    assert "frame size changed from 64x48 to 80x60" in caplog.text


def test_live_failed_first_open_is_not_a_drop() -> None:
    source = VideoSource(1, reconnect=FAST, capture_factory=ScriptedFactory(None, _frames(2, (8, 8))))
    assert [c.part_id for c in itertools.islice(source.captures(), 2)] == ["usb1-0", "usb1-1"]
    assert (source.drops, source.reconnects) == (0, 0)


def test_live_repeated_frames_are_skipped_then_reopened(caplog: pytest.LogCaptureFixture) -> None:
    frozen = [_image(8, 8, 1), _image(8, 8, 2)] + [_image(8, 8, 2)] * 50
    factory = ScriptedFactory(frozen, [_image(8, 8, 3)])
    source = VideoSource("http://cam/", reconnect=FAST, read_timeout_s=0.0, capture_factory=factory)
    with caplog.at_level(logging.WARNING, logger="lineqa.serving.camera.sources"):
        captures = list(itertools.islice(source.captures(), 3))
    assert [round(_grey(c)) for c in captures] == [1, 2, 3]
    assert (source.drops, source.reconnects) == (1, 1)
    assert "picture frozen" in caplog.text


def test_close_ends_a_live_source_waiting_to_reconnect() -> None:
    source = VideoSource(
        "rtsp://cam/live", reconnect=Backoff(initial_s=30, max_s=30), capture_factory=ScriptedFactory()
    )
    reader = threading.Thread(target=lambda: list(source.captures()))
    reader.start()
    time.sleep(0.2)
    start = time.monotonic()
    source.close()
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - start < 0.5


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    exact = Backoff(initial_s=0.5, max_s=10, jitter=0).delays()
    assert list(itertools.islice(exact, 7)) == [0.5, 1, 2, 4, 8, 10, 10]
    jittered = list(itertools.islice(Backoff(initial_s=1, max_s=1, jitter=0.2).delays(), 50))
    assert all(0.8 <= d <= 1.2 for d in jittered) and len(set(jittered)) > 1
    with pytest.raises(ValueError):
        Backoff(initial_s=5, max_s=1)


# --- the latest-frame holder and the rate trigger ------------------------------------------------------------


class CountingSource:
    """Captures ``part-0``, ``part-1``, ... at ``fps`` until ``count`` or closed; fails instead of ending when
    ``fail`` is set."""

    def __init__(self, fps: float, count: int | None = None, fail: bool = False) -> None:
        self.fps, self.count, self.fail = fps, count, fail
        self.stop = threading.Event()

    def captures(self) -> Iterator[Capture]:
        for i in itertools.count():
            if (self.count is not None and i >= self.count) or self.stop.wait(1 / self.fps):
                break
            yield Capture(b"", pb.IMAGE_ENCODING_JPEG, f"part-{i}", datetime.now(timezone.utc), "test")
        if self.fail:
            raise RuntimeError("camera unplugged")

    def close(self) -> None:
        self.stop.set()


def _index(capture: Capture) -> int:
    return int(capture.part_id.split("-")[1])


def test_latest_frame_never_hands_out_a_capture_twice() -> None:
    latest = LatestFrame(CountingSource(fps=200, count=60))
    seen: list[int] = []
    while not latest.done:
        capture = latest.grab(timeout=0.05)
        if capture is not None:
            seen.append(_index(capture))
        time.sleep(0.02)
    assert seen == sorted(set(seen)) and seen[-1] == 59
    assert latest.skipped == 60 - len(seen) > 0
    assert latest.grab() is None and latest.error is None


def test_latest_frame_grab_waits_and_close_stops_reading() -> None:
    source = CountingSource(fps=5)
    latest = LatestFrame(source)
    assert latest.grab() is None
    first = latest.grab(timeout=2)
    assert first is not None and first.part_id == "part-0"
    latest.close()
    assert source.stop.is_set()
    time.sleep(0.3)
    assert latest.done


def test_latest_frame_keeps_the_source_error() -> None:
    latest = LatestFrame(CountingSource(fps=100, count=1, fail=True))
    assert latest.grab(timeout=2) is not None
    assert latest.grab(timeout=2) is None and latest.done
    assert isinstance(latest.error, RuntimeError)


def test_rate_trigger_takes_the_newest_frame_at_the_rate() -> None:
    trigger = RateTrigger(CountingSource(fps=100), fps=10)
    start = time.monotonic()
    captures = list(itertools.islice(trigger.captures(), 8))
    elapsed = time.monotonic() - start
    trigger.close()
    indices = [_index(c) for c in captures]
    assert indices == sorted(set(indices))
    assert min(b - a for a, b in itertools.pairwise(indices)) >= 5  # about 10 source frames per tick
    assert 0.6 < elapsed < 1.3


def test_rate_trigger_skips_ticks_without_a_new_frame_and_ends_with_the_source() -> None:
    captures = list(RateTrigger(CountingSource(fps=8, count=6), fps=50).captures())
    assert [_index(c) for c in captures] == list(range(6))
    with pytest.raises(RuntimeError, match="camera unplugged"):
        list(RateTrigger(CountingSource(fps=100, count=2, fail=True), fps=50).captures())


def test_rate_trigger_close_ends_iteration_promptly() -> None:
    source = CountingSource(fps=100)
    trigger = RateTrigger(source, fps=0.5)
    reader = threading.Thread(target=lambda: list(trigger.captures()))
    reader.start()
    time.sleep(0.3)
    start = time.monotonic()
    trigger.close()
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - start < 0.5 and source.stop.is_set()
