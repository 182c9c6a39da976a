"""A hot folder: a machine drops each part's image into a folder, and the agent captures every file once.

The spool keeps the ledger of captured files (path, size and mtime) in the same transaction that gives the
frame its sequence number, so a restarted agent, with the same arguments and spool, never captures a file
twice nor gives it a new sequence number; a file rewritten under the same name (another size or mtime) is a
new file. Once a file's frame has ended, the file can be moved: with a done folder, a judged file (PASS,
FAIL, REVIEW) is moved there; with an error folder, a file that was not judged (a final ERROR such as a
corrupt image, dropped from a full spool, or unreadable as a JPEG or PNG by the agent) goes there. Sub-folders
are kept, and a name already taken there gets ``-1``, ``-2``, ... appended. Without those folders
files stay, remembered in the ledger until they leave the folder.

A file still being written is not taken: a file is taken once its size and mtime have not changed for
``settle_s`` (default 1 s), either seen unchanged over that long or last modified that long ago, and is read
again if it changed while being read. A writer that pauses longer than that mid-file must write under a
temporary name (a dot file, or a name not ending in .jpg/.jpeg/.png) and rename it when complete, as rsync
and most copiers do.

Without ``watch`` the source ends once every image in the folder was captured and every captured file's frame
has ended (so the agent exits when the folder is done); with it, the folder is watched until the agent stops.
The folder is listed every ``poll_s``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lineqa.serving.camera.image_files import image_capture, is_image_name, natural_key
from lineqa.serving.camera.model import Capture, CapturedFile
from lineqa.serving.camera.pacing import Pacer
from lineqa.serving.camera.sinks import LogThrottle
from lineqa.serving.camera.spool import FileOutcome, Spool
from lineqa.serving.errors import ServingError
from lineqa.vision.errors import ImageError

logger = logging.getLogger(__name__)

_NOT_JUDGED = frozenset({FileOutcome.ERROR, FileOutcome.DROPPED, FileOutcome.UNREADABLE})


class HotFolderError(ServingError):
    """A hot folder that cannot be watched as asked (missing folder, a done or error folder that is the folder)."""


@dataclass(frozen=True)
class HotFolderSettings:
    done_dir: Path | None = None
    error_dir: Path | None = None
    watch: bool = False
    settle_s: float = 1.0
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if self.settle_s < 0 or self.poll_s <= 0:
            raise ValueError(f"settle_s must be >= 0 and poll_s > 0, got {self.settle_s} and {self.poll_s}")


def _free_name(target: Path) -> Path:
    """``target``, or, when a file of that name is there already, the first free ``<stem>-<n><suffix>``."""
    candidate, number = target, 0
    while candidate.exists():
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    return candidate


class HotFolderSource:
    """The image files landing in ``folder`` (``pattern``, a glob, ``**/*.png`` descends), each captured once,
    in natural order, as its bytes unchanged, paced at ``rate_fps``; see the module for the rules."""

    def __init__(
        self,
        folder: str | Path,
        spool: Spool,
        settings: HotFolderSettings | None = None,
        *,
        pattern: str | None = None,
        rate_fps: float | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.settings = settings or HotFolderSettings()
        self.pattern = pattern or "*"
        if not self.folder.is_dir():
            raise HotFolderError(f"camera source {str(folder)!r}: no such folder")
        self._skip: list[tuple[str, ...]] = []  # done and error folders inside the watched one
        for kind, target in (("done", self.settings.done_dir), ("error", self.settings.error_dir)):
            if target is None:
                continue
            try:
                inside = target.resolve().relative_to(self.folder.resolve())
            except ValueError:
                continue
            if not inside.parts:
                raise HotFolderError(f"camera source {str(folder)!r}: the {kind} folder cannot be the folder itself")
            self._skip.append(inside.parts)
        self._spool = spool
        self._stop = threading.Event()
        self._pacer = Pacer(rate_fps, self._stop)
        self._throttle = LogThrottle(logger)
        self._seen: dict[str, tuple[int, int, float]] = {}  # path -> size, mtime, when first seen so
        if not self.settings.watch and not self._listing() and not spool.files_in_flight:
            # Not an error: a restarted agent finds the folder it has emptied into its done folder.
            wanted = f" matching {pattern!r}" if pattern else ""
            logger.warning("hot folder %s: no .jpg/.jpeg/.png images%s to capture", folder, wanted)

    def captures(self) -> Iterator[Capture]:
        while not self._stop.is_set():
            self._move_ended()
            listing = self._listing()
            known = self._spool.captured_files()
            unsettled = False
            for path, file in listing:
                if file in known:
                    continue
                capture = self._take(path, file)
                if capture is None:
                    unsettled = unsettled or self._waiting(file)
                    continue
                if not self._pacer.wait():
                    return
                yield capture
            gone = known - {file for _, file in listing}
            if gone:
                self._spool.forget_files(sorted(gone, key=lambda f: f.path))  # only those that have ended
            if not self.settings.watch and not unsettled and not self._spool.files_in_flight:
                self._move_ended()
                return
            self._stop.wait(self.settings.poll_s)

    def close(self) -> None:
        self._stop.set()

    # -- listing and taking files ---------------------------------------------------------------------------

    def _listing(self) -> list[tuple[Path, CapturedFile]]:
        """The folder's image files now, in natural order, with their size and mtime."""
        found = []
        for path in self.folder.glob(self.pattern):
            relative = path.relative_to(self.folder)
            if not is_image_name(path) or any(relative.parts[: len(skip)] == skip for skip in self._skip):
                continue
            try:
                stat = path.stat()
            except OSError:  # gone since it was listed
                continue
            if path.is_file():
                found.append((path, CapturedFile(relative.as_posix(), stat.st_size, stat.st_mtime_ns)))
        return sorted(found, key=lambda entry: natural_key(Path(entry[1].path)))

    def _settled(self, file: CapturedFile) -> bool:
        now = time.monotonic()
        size, mtime_ns, since = self._seen.get(file.path, (-1, -1, now))
        if (size, mtime_ns) != (file.size, file.mtime_ns):
            self._seen[file.path] = (file.size, file.mtime_ns, now)
            since = now
        unchanged_s = max(now - since, time.time() - file.mtime_ns / 1e9)
        return unchanged_s >= self.settings.settle_s

    def _waiting(self, file: CapturedFile) -> bool:
        """Whether ``file`` was passed over because it may still be being written (not because it is gone)."""
        return file.path in self._seen

    def _take(self, path: Path, file: CapturedFile) -> Capture | None:
        """The capture of a settled file; None while it is unsettled, when it is gone, or unreadable (noted)."""
        if not self._settled(file):
            return None
        try:
            data = path.read_bytes()
            stat = path.stat()
        except FileNotFoundError:
            self._seen.pop(file.path, None)
            return None
        except OSError as exc:
            self._unreadable(file, str(exc))
            return None
        if (stat.st_size, stat.st_mtime_ns, len(data)) != (file.size, file.mtime_ns, file.size):
            self._seen[file.path] = (-1, -1, time.monotonic())  # changed while read: wait for it to settle again
            return None
        self._seen.pop(file.path, None)
        try:
            return image_capture(data, file.path, path.stem, file)
        except ImageError as exc:
            self._unreadable(file, str(exc))
            return None

    def _unreadable(self, file: CapturedFile, why: str) -> None:
        logger.warning("hot folder %s: %s is not a readable JPEG or PNG (%s); not sent", self.folder, file.path, why)
        self._spool.note_unreadable(file)
        self._seen.pop(file.path, None)

    # -- moving files that ended ----------------------------------------------------------------------------

    def _move_ended(self) -> None:
        """Move the files whose frame ended to the done or error folder, then forget them."""
        done_dir, error_dir = self.settings.done_dir, self.settings.error_dir
        targets = {FileOutcome.JUDGED: done_dir} if done_dir else {}
        if error_dir:
            targets.update(dict.fromkeys(_NOT_JUDGED, error_dir))
        moved = []
        for file, outcome in self._spool.ended_files(frozenset(targets)):
            source = self.folder / file.path
            try:
                stat = source.stat()
            except FileNotFoundError:  # moved before a crash let the ledger know
                moved.append(file)
                continue
            if (stat.st_size, stat.st_mtime_ns) != (file.size, file.mtime_ns):
                moved.append(file)  # rewritten since: a new file, captured as such
                continue
            target = _free_name(targets[outcome] / file.path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(os.fspath(source), os.fspath(target))
            except OSError as exc:
                self._throttle.warning("move", "hot folder: cannot move %s to %s: %s", source, target, exc)
                continue
            moved.append(file)
        if moved:
            self._spool.forget_files(moved)
