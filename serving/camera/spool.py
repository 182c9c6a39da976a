"""The camera's write-ahead spool: every capture is on disk, with its sequence number, before it is sent.

Nothing is lost when the gateway is unreachable, when the agent restarts, or when a stream breaks with frames
in flight: a frame leaves the spool only after its verdict has been handed to the sinks, and pending frames
are sent again in order (the gateway's idempotency on (tenant, camera, sequence) turns a frame it had already
judged into a replay of the original result). Sequence numbers come from the spool's own counter, so they
survive restarts; a new spool starts its counter at the current time in microseconds, so a camera whose spool
was lost does not reuse old sequence numbers (which the gateway would answer with old verdicts).

The spool is bounded. When it is full, the policy decides: ``block`` holds the trigger (the line waits), or
``drop-oldest`` removes the oldest pending frame, counted and logged. Nothing is ever dropped silently.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

from lineqa.serving.camera.model import Capture
from lineqa.serving.errors import ServingError

logger = logging.getLogger(__name__)


class SpoolFullPolicy(str, Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"


class SpoolError(ServingError):
    """The spool cannot be opened or written (a full disk, a broken file)."""


@dataclass(frozen=True)
class SpooledFrame:
    sequence: int
    capture: Capture


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    sequence INTEGER PRIMARY KEY, part_id TEXT NOT NULL, captured_at TEXT NOT NULL, encoding INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, origin TEXT NOT NULL, data BLOB NOT NULL
);
"""


class Spool:
    """A bounded, durable FIFO of captures in one SQLite file; thread-safe."""

    def __init__(
        self, path: Path, *, max_frames: int = 10_000, policy: SpoolFullPolicy = SpoolFullPolicy.BLOCK
    ) -> None:
        self.path = path
        self.max_frames = max_frames
        self.policy = policy
        self._lock = threading.Condition()
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_sequence', ?)", (time.time_ns() // 1000,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', 0)")
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {path}: {exc}") from exc

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    @property
    def dropped(self) -> int:
        """Frames removed by the drop-oldest policy, over the spool's whole life."""
        with self._lock:
            return self._meta("dropped")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def append(self, capture: Capture, timeout_s: float | None = None) -> int:
        """Store a capture durably and give it the next sequence number. When full: wait for room (block) or
        drop the oldest pending frame (drop-oldest). Raises :class:`SpoolError` if it cannot be written, or
        :class:`TimeoutError` when blocking for longer than ``timeout_s``."""
        with self._lock:
            room = self.policy is SpoolFullPolicy.DROP_OLDEST or self._lock.wait_for(
                lambda: self._closed or self._count() < self.max_frames, timeout_s
            )
            if not room:
                raise TimeoutError(f"the spool stayed full ({self.max_frames} frames) for {timeout_s} s")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                while self._count() >= self.max_frames:
                    oldest = self._db.execute(
                        "SELECT sequence, part_id FROM frames ORDER BY sequence LIMIT 1"
                    ).fetchone()
                    self._db.execute("DELETE FROM frames WHERE sequence = ?", (oldest[0],))
                    self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'dropped'")
                    logger.warning(
                        "spool full (%d frames): dropped frame %d (part %s), the oldest not yet judged",
                        self.max_frames,
                        oldest[0],
                        oldest[1],
                    )
                sequence = self._meta("next_sequence")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_sequence'", (sequence + 1,))
                self._db.execute(
                    "INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sequence,
                        capture.part_id,
                        capture.captured_at.isoformat(),
                        capture.encoding,
                        capture.width,
                        capture.height,
                        capture.origin,
                        capture.data,
                    ),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise SpoolError(f"cannot spool part {capture.part_id} in {self.path}: {exc}") from exc
            self._lock.notify_all()
            return sequence

    def pending(self, after: int = -1, limit: int = 64) -> list[SpooledFrame]:
        """The oldest frames with a sequence above ``after``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, part_id, captured_at, encoding, width, height, origin, data FROM frames "
                "WHERE sequence > ? ORDER BY sequence LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            SpooledFrame(seq, Capture(bytes(data), enc, part, datetime.fromisoformat(at), origin, width, height))
            for seq, part, at, enc, width, height, origin, data in rows
        ]

    def done(self, sequence: int) -> None:
        """The frame's verdict was handed on: it leaves the spool."""
        with self._lock:
            self._db.execute("DELETE FROM frames WHERE sequence = ?", (sequence,))
            self._lock.notify_all()

    def wait_for_frames(self, after: int, timeout_s: float) -> bool:
        """Block until a frame above ``after`` exists (or the timeout passes); for a worker thread."""
        with self._lock:
            return self._lock.wait_for(lambda: self._closed or self._has_after(after), timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            self._db.close()

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0])

    def _has_after(self, after: int) -> bool:
        return self._db.execute("SELECT 1 FROM frames WHERE sequence > ? LIMIT 1", (after,)).fetchone() is not None
