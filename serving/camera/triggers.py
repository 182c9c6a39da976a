"""When a frame is judged: at a fixed rate, or when something outside asks for one (a part in position).

A live camera gives frames faster than parts arrive, and a frame read late is a stale picture of the line. So
triggers read through :class:`LatestFrame`, which drains the source continuously and keeps only the newest
capture; a trigger takes it at most once, so no frame is ever judged twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from lineqa.serving.camera.model import Capture, FrameSource
from lineqa.serving.camera.pacing import Pacer

logger = logging.getLogger(__name__)


class LatestFrame:
    """Reads ``source`` in a daemon thread from construction on, holding only its newest capture.

    :meth:`grab` hands each capture out at most once; captures replaced before anyone grabbed them are counted
    in ``skipped``. If the source raises, the error is logged and kept in ``error``, and the holder is done.
    """

    def __init__(self, source: FrameSource) -> None:
        self._source = source
        self._changed = threading.Condition()
        self._latest: Capture | None = None
        self._ended = False
        self.skipped = 0
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._read, name="camera-latest-frame", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for capture in self._source.captures():
                with self._changed:
                    if self._latest is not None:
                        self.skipped += 1
                    self._latest = capture
                    self._changed.notify_all()
        except Exception as exc:
            logger.exception("camera source failed")
            self.error = exc
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def grab(self, timeout: float | None = 0.0) -> Capture | None:
        """The newest capture not yet grabbed, waiting up to ``timeout`` seconds (``None``: until one comes or
        the source ends) for one; None if there is none."""
        with self._changed:
            self._changed.wait_for(lambda: self._latest is not None or self._ended, timeout)
            capture, self._latest = self._latest, None
            return capture

    @property
    def done(self) -> bool:
        """True once the source has ended and its last capture has been grabbed: no more will come."""
        with self._changed:
            return self._ended and self._latest is None

    def close(self) -> None:
        """Close the source, which ends the reading thread."""
        self._source.close()


class RateTrigger:
    """A :class:`~lineqa.serving.camera.model.FrameSource` giving the newest frame of ``source`` every ``1/fps``
    seconds. A tick with no new frame since the last is skipped rather than repeating a frame. It ends when
    ``source`` ends (re-raising the error the source failed with, if any) and owns it: closing one closes both.
    """

    def __init__(self, source: FrameSource, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"trigger rate must be positive, got {fps}")
        self._source = source
        self.fps = fps
        self._stop = threading.Event()

    def captures(self) -> Iterator[Capture]:
        latest = LatestFrame(self._source)
        pacer = Pacer(self.fps, self._stop)
        try:
            while pacer.wait():
                capture = latest.grab()
                if capture is not None:
                    yield capture
                elif latest.done:
                    if latest.error is not None:
                        raise latest.error
                    return
        finally:
            latest.close()

    def close(self) -> None:
        self._stop.set()
        self._source.close()
