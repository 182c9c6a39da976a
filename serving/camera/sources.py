"""Where the camera agent's frames come from: an image folder, a video file or live stream, or synthetic parts.

Every source is a :class:`~lineqa.serving.camera.model.FrameSource`: a blocking iterator of encoded captures, read in
a worker thread, that :meth:`close` ends promptly from another thread. A live stream (RTSP/HTTP, USB) is
expected to drop on a real line (a switch reboots, a cable is pulled), so it reconnects by itself with
jittered exponential backoff and never ends until closed; finite sources (a folder, a video file) end.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from lineqa.datasets.synth import Surface, generate_part
from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.hot_folder import HotFolderError, HotFolderSettings, HotFolderSource
from lineqa.serving.camera.image_files import image_capture, is_image_name, natural_key
from lineqa.serving.camera.model import Capture, FrameSource
from lineqa.serving.camera.pacing import Backoff, Pacer, check_rate
from lineqa.serving.camera.spool import Spool
from lineqa.serving.errors import ServingError
from lineqa.vision.errors import ImageError

logger = logging.getLogger(__name__)

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
_DEVICE_PATH = re.compile(r"/dev/video(\d+)")
_RECONNECT = Backoff()


class SourceError(ServingError):
    """A camera source spec that cannot be opened (missing folder, no images, unreadable video, bad option)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # only for an image OpenCV cannot represent as JPEG (not 8-bit, odd channel count)
        raise SourceError(f"cannot encode a {image.dtype} image of shape {image.shape} as JPEG")
    return bytes(encoded.tobytes())


class FolderSource:
    """The images in a folder, in natural order, sent as their file bytes unchanged (no re-encoding, so the
    gateway judges exactly what is on disk). ``pattern`` is a glob relative to the folder (``**/*.png``
    descends); only JPEG and PNG files are taken. A file that is not a readable JPEG or PNG is logged and
    skipped, so one bad file does not stop a demo or a replay."""

    def __init__(
        self, folder: str | Path, *, loop: bool = False, pattern: str | None = None, rate_fps: float | None = None
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"camera source {str(folder)!r}: no such folder")
        matches = self.folder.glob(pattern or "*")
        self.files = sorted(
            (p for p in matches if is_image_name(p) and p.is_file()),
            key=lambda p: natural_key(p.relative_to(self.folder)),
        )
        if not self.files:
            wanted = f" matching {pattern!r}" if pattern else ""
            raise SourceError(f"camera source {str(folder)!r}: no .jpg/.jpeg/.png images{wanted}")
        self.loop = loop
        check_rate(rate_fps)
        self._rate_fps = rate_fps
        self._stop = threading.Event()

    def captures(self) -> Iterator[Capture]:
        pacer = Pacer(self._rate_fps, self._stop)
        while True:
            sent = 0
            for path in self.files:
                capture = self._read(path)
                if capture is None:
                    continue
                if not pacer.wait():
                    return
                yield capture
                sent += 1
            if not self.loop or self._stop.is_set():
                return
            if not sent:  # looping over nothing would spin forever
                logger.error("%s: no readable image left; the folder source ends", self.folder)
                return

    def _read(self, path: Path) -> Capture | None:
        relative = path.relative_to(self.folder).as_posix()
        try:
            return image_capture(path.read_bytes(), relative, path.stem)
        except (OSError, ImageError) as exc:
            logger.warning("skipping %s: %s", path, exc)
            return None

    def close(self) -> None:
        self._stop.set()


class VideoCaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` a :class:`VideoSource` uses (a fake stands in for it in tests)."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


def open_capture(target: str | int, open_timeout_s: float, read_timeout_s: float) -> VideoCaptureLike:
    """Open a capture through OpenCV. Streams and files go through FFmpeg, whose open and read timeouts
    bound how long a dead camera can block (and so how long :meth:`VideoSource.close` can take to end);
    devices use the platform's camera backend."""
    if isinstance(target, int):
        return cv2.VideoCapture(target)
    timeouts = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, timeouts)


CaptureFactory = Callable[[str | int, float, float], VideoCaptureLike]


def _redact(url: str) -> str:
    """A stream URL fit for logs and capture origins: camera URLs often carry ``user:password@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class VideoSource:
    """Frames from OpenCV: a video file, an RTSP/HTTP stream, or a USB device (an ``int`` index or
    ``/dev/videoN``), each JPEG-encoded with part id ``<file stem, host or device>-<frame index>``.

    A live source treats a failed open or read as a dropped stream: it closes the capture and reopens it
    with :class:`Backoff`, logging each drop and recovery and counting them (``drops``, ``reconnects``), and
    only ends when closed. A video file ends at its end (or starts over with ``loop``). A frame size that
    changes (a camera reconfigured to another resolution) is passed on as is — the gateway takes any size —
    but logged and counted in ``size_changes``, since it usually means someone changed the camera. A camera
    that restarts its stream at the new size (as most do) is simply reconnected. OpenCV 4.11 cannot switch
    size within one open stream: after a larger frame it repeats the last old-size frame, which a live source
    notices (a frozen picture, see :meth:`_fresh_frames`) and reopens the stream; after a smaller one it gives
    garbled frames of the old size that nothing here can tell apart. A video file is read as OpenCV reads it.
    """

    def __init__(
        self,
        target: str | int | Path,
        *,
        jpeg_quality: int = 95,
        rate_fps: float | None = None,
        loop: bool = False,
        reconnect: Backoff = _RECONNECT,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        capture_factory: CaptureFactory = open_capture,
    ) -> None:
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")
        check_rate(rate_fps)
        self._target, self.name, self.live = self._resolve(target)
        if self.live and (loop or rate_fps):
            # Pacing a live stream would let frames queue up in the decoder: a rate trigger keeps the newest.
            raise ValueError("loop and rate_fps apply to video files; pace a live source with a rate trigger")
        self.jpeg_quality = jpeg_quality
        self.loop = loop
        self.reconnect = reconnect
        self._rate_fps = rate_fps
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._factory = capture_factory
        self._stop = threading.Event()
        self.drops = 0
        self.reconnects = 0
        self.size_changes = 0
        self._size: tuple[int, int] | None = None
        if not self.live:
            self._check_file()

    @staticmethod
    def _resolve(target: str | int | Path) -> tuple[str | int, str, bool]:
        """What to open, the name for part ids and logs, and whether it is live."""
        if isinstance(target, int):
            return target, f"usb{target}", True
        text = str(target)
        device = _DEVICE_PATH.fullmatch(text)
        if device:
            return int(device.group(1)), f"usb{device.group(1)}", True
        parts = urlsplit(text)
        if parts.scheme.lower() in LIVE_SCHEMES:
            return text, parts.hostname or "stream", True
        return text, Path(text).stem, False

    @property
    def display(self) -> str:
        """The source as logs show it, without credentials."""
        return _redact(self._target) if isinstance(self._target, str) else f"device {self._target}"

    def _check_file(self) -> None:
        if not Path(str(self._target)).is_file():
            raise SourceError(f"camera source {self.display!r}: no such video file")
        capture = self._factory(self._target, *self._timeouts)
        try:
            if not capture.isOpened():
                raise SourceError(f"camera source {self.display!r}: OpenCV cannot read it as a video")
        finally:
            capture.release()

    def captures(self) -> Iterator[Capture]:
        pacer = Pacer(self._rate_fps, self._stop)
        index = 0
        delays: Iterator[float] | None = None  # set while the source is failing, reset by the next frame
        dropped_at: float | None = None  # set from a drop until frames flow again
        while not self._stop.is_set():
            capture = self._factory(self._target, *self._timeouts)
            frames = 0
            try:
                for frame in self._fresh_frames(capture):
                    if frames == 0 and dropped_at is not None:
                        self.reconnects += 1
                        logger.info("%s: reconnected after %.1f s", self.display, time.monotonic() - dropped_at)
                        dropped_at = None
                    delays = None
                    frames += 1
                    if not pacer.wait():
                        return
                    yield self._encode(frame, index)
                    index += 1
            finally:
                capture.release()
            if self._stop.is_set():
                return
            if not self.live:
                if self.loop and frames:
                    continue
                return
            if frames:
                self.drops += 1
                dropped_at = time.monotonic()
                logger.warning("%s: stream dropped after %d frames; reconnecting", self.display, frames)
            if delays is None:
                delays = self.reconnect.delays()
            delay = next(delays)
            logger.info("%s: no frames; next attempt in %.1f s", self.display, delay)
            if self._stop.wait(delay):
                return

    def _fresh_frames(self, capture: VideoCaptureLike) -> Iterator[np.ndarray]:
        """The frames of one opened capture, until a read fails or the source is closed.

        A camera's sensor noise makes every real frame differ, so on a live source a frame equal to the one
        before is a repeat, which OpenCV gives when a stream stalls or changes frame size mid-stream: it is
        never passed on (it would be judged twice), and once the picture has been frozen for a read timeout
        the capture is given up, so the stream is reopened (at its new size).
        """
        previous: np.ndarray | None = None
        fresh_at = 0.0
        while capture.isOpened() and not self._stop.is_set():
            ok, frame = capture.read()
            if not ok or frame is None:
                return
            if self.live and previous is not None and np.array_equal(frame, previous):
                frozen_s = time.monotonic() - fresh_at
                if frozen_s >= self._timeouts[1]:
                    logger.warning("%s: picture frozen for %.1f s; reopening the stream", self.display, frozen_s)
                    return
                continue
            previous, fresh_at = frame, time.monotonic()
            yield frame

    def _encode(self, frame: np.ndarray, index: int) -> Capture:
        height, width = frame.shape[:2]
        if self._size is not None and self._size != (width, height):
            self.size_changes += 1
            logger.warning("%s: frame size changed from %dx%d to %dx%d", self.display, *self._size, width, height)
        self._size = (width, height)
        return Capture(
            _jpeg(frame, self.jpeg_quality),
            pb.IMAGE_ENCODING_JPEG,
            f"{self.name}-{index}",
            _now(),
            f"{self.display}#{index}",
            width=width,
            height=height,
        )

    def close(self) -> None:
        """End :meth:`captures` at its next check: between reads, or at once while it waits to reconnect."""
        self._stop.set()


class SyntheticSource:
    """Synthetic parts with painted defects (``lineqa.datasets.synth``), for demos without a camera: part ``i`` is
    ``synthetic-<seed+i>`` and the same seed always gives the same images."""

    def __init__(
        self,
        surface: str | Surface = Surface.METAL,
        *,
        seed: int = 0,
        count: int | None = None,
        rate_fps: float | None = None,
        size: int = 320,
    ) -> None:
        try:
            self.surface = Surface(surface)
        except ValueError:
            names = ", ".join(s.value for s in Surface)
            raise SourceError(f"camera source 'synthetic:{surface}': unknown surface (known: {names})") from None
        if count is not None and count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        check_rate(rate_fps)
        self.seed, self.count, self.size = seed, count, size
        self._rate_fps = rate_fps
        self._stop = threading.Event()

    def captures(self) -> Iterator[Capture]:
        pacer = Pacer(self._rate_fps, self._stop)
        index = 0
        while self.count is None or index < self.count:
            part_seed = self.seed + index
            data = _jpeg(generate_part(self.surface, part_seed, self.size).image, 95)
            if not pacer.wait():
                return
            yield Capture(
                data,
                pb.IMAGE_ENCODING_JPEG,
                f"synthetic-{part_seed}",
                _now(),
                f"synthetic:{self.surface.value}#{part_seed}",
                width=self.size,
                height=self.size,
            )
            index += 1

    def close(self) -> None:
        self._stop.set()


def _folder(
    target: str,
    *,
    spool: Spool | None = None,
    hot: HotFolderSettings | None = None,
    loop: bool = False,
    pattern: str | None = None,
    rate_fps: float | None = None,
) -> FrameSource:
    """A folder is a hot folder, each file captured once, when a spool keeps its ledger; with ``loop`` (a
    demo) or without a spool, its images are replayed as they are, again on every pass."""
    if spool is None or loop:
        if hot is not None:
            raise ValueError("a done or error folder, watching and a settle time are for a hot folder, not --loop")
        return FolderSource(target, loop=loop, pattern=pattern, rate_fps=rate_fps)
    return HotFolderSource(target, spool, hot, pattern=pattern, rate_fps=rate_fps)


_FACTORIES: dict[str, Callable[..., FrameSource]] = {
    "folder": _folder,
    "video": VideoSource,
    "synthetic": SyntheticSource,
}
_OPTIONS: dict[str, frozenset[str]] = {
    "folder": frozenset({"loop", "pattern", "rate_fps", "spool", "hot"}),
    "video": frozenset({"loop", "rate_fps", "jpeg_quality", "reconnect", "open_timeout_s", "read_timeout_s"}),
    "synthetic": frozenset({"seed", "count", "rate_fps", "size"}),
}


def open_source(spec: str, **options: Any) -> FrameSource:
    """The source a ``--source`` spec names: a folder of images (a hot folder given a ``spool``, see
    :func:`_folder`); ``synthetic:metal`` or ``synthetic:pcb``;
    an ``rtsp://``, ``http://`` or ``https://`` stream; ``usb:N`` or ``/dev/videoN``; or a video file.

    ``options`` are the keyword arguments of the chosen source class; one that does not apply to it (say
    ``count`` for a folder) is refused rather than silently ignored. Raises :class:`SourceError`, one line
    naming the spec, for anything that cannot be opened.
    """
    kind, target = _classify(spec)
    unknown = sorted(set(options) - _OPTIONS[kind])
    if unknown:
        raise SourceError(f"camera source {_shown(spec)!r}: {', '.join(unknown)} does not apply to this source")
    try:
        return _FACTORIES[kind](target, **options)
    except ValueError as exc:
        raise SourceError(f"camera source {_shown(spec)!r}: {exc}") from None
    except HotFolderError as exc:
        raise SourceError(str(exc)) from None


def is_folder_spec(spec: str) -> bool:
    """Whether ``--source`` names a folder (raises :class:`SourceError` for a spec that names nothing)."""
    return _classify(spec)[0] == "folder"


def _shown(spec: str) -> str:
    return _redact(spec) if urlsplit(spec).scheme.lower() in LIVE_SCHEMES else spec


def _classify(spec: str) -> tuple[str, str | int]:
    """Which kind of source a spec names, and the argument to give it."""
    scheme, _, rest = spec.partition(":")
    if scheme == "synthetic":
        return "synthetic", rest or Surface.METAL.value
    if urlsplit(spec).scheme.lower() in LIVE_SCHEMES or _DEVICE_PATH.fullmatch(spec):
        return "video", spec
    if scheme == "usb":
        if not rest.isdigit():
            raise SourceError(f"camera source {spec!r}: expected usb:<device index>, such as usb:0")
        return "video", int(rest)
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder", str(path)
    if path.is_file():
        return "video", str(path)
    raise SourceError(
        f"camera source {spec!r}: no such folder or file (expected a folder, a video file, rtsp://..., "
        "http(s)://..., usb:N, /dev/videoN or synthetic:metal|pcb)"
    )
