"""The camera's write-ahead spool: every capture is on disk, with its sequence number, before it is sent; every
verdict handed on is in its outbox before any output sees it.

One SQLite file (WAL, ``synchronous=FULL``) per camera holds four things, changed together in single
transactions so that no crash of the agent, at any instant, leaves them disagreeing:

* **frames** not yet judged, in sequence order. Sequence numbers come from the spool's own counter, so they
  survive restarts; a new spool starts its counter at the current time in microseconds, so a camera whose spool
  was lost does not reuse old sequence numbers. A frame whose answer was a transient ERROR stays, marked
  *answered*, and is sent again after a backoff until it is judged.
* the **outbox**: each verdict handed on, numbered by a counter that also starts at the time in microseconds.
  Taking a frame's verdict and removing the frame (or marking it answered) is one transaction with writing the
  outbox row, so a verdict is handed on once or not at all; each output then delivers from the outbox.
* **cursors**: per output, the newest outbox row it confirmed, a lower bound of what it holds; rows every
  output confirmed are pruned. The outbox keeps at most ``max_outbox`` rows (an output that has been failing
  for that long loses the oldest, counted).
* the **captured files** ledger of a hot folder: which files (path, size, mtime) became which frame, and how
  they ended (judged, error, dropped, unreadable), so a restarted agent never captures a file twice.

The spool is bounded. When ``max_frames`` frames are spooled, the policy decides: ``block`` holds the trigger
(the line waits), or ``drop-oldest`` removes the oldest frame, counted and logged. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Capture, CapturedFile, Delivery
from lineqa.serving.errors import ServingError

logger = logging.getLogger(__name__)


class SpoolFullPolicy(str, Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop-oldest"


class FileOutcome(str, Enum):
    """How a captured file ended: what a hot folder does with it (done folder, error folder)."""

    JUDGED = "judged"  # PASS, FAIL or REVIEW handed on
    ERROR = "error"  # a final ERROR handed on (corrupt image, unknown recipe, ...)
    DROPPED = "dropped"  # removed from a full spool by drop-oldest, never judged
    UNREADABLE = "unreadable"  # the agent could not read it as a JPEG or PNG; never sent


class SpoolError(ServingError):
    """The spool cannot be opened or written (a full disk, a broken file)."""


@dataclass(frozen=True)
class SpooledFrame:
    sequence: int
    capture: Capture
    answered: bool = False  # a transient ERROR was its answer: whatever comes next for it is late
    attempts: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS frames (
    sequence INTEGER PRIMARY KEY, part_id TEXT NOT NULL, captured_at TEXT NOT NULL, encoding INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, origin TEXT NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    delivery INTEGER PRIMARY KEY, sequence INTEGER NOT NULL, late INTEGER NOT NULL, retrying INTEGER NOT NULL,
    result BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, delivery INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS captured (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sequence INTEGER, outcome TEXT,
    PRIMARY KEY (path, size, mtime_ns)
);
CREATE INDEX IF NOT EXISTS captured_sequence ON captured (sequence);
"""
# Columns added to the first spool format's frames table (spools written before retries existed).
_FRAME_COLUMNS = {
    "answered": "INTEGER NOT NULL DEFAULT 0",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "retry_at": "REAL NOT NULL DEFAULT 0",
}
_FRAME_FIELDS = "sequence, part_id, captured_at, encoding, width, height, origin, data, answered, attempts"


def _frame(row: tuple[Any, ...]) -> SpooledFrame:
    sequence, part, at, encoding, width, height, origin, data, answered, attempts = row
    capture = Capture(bytes(data), encoding, part, datetime.fromisoformat(at), origin, width, height)
    return SpooledFrame(sequence, capture, bool(answered), attempts)


class Spool:
    """A bounded, durable FIFO of captures with the outbox of their verdicts, in one SQLite file; thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        max_frames: int = 10_000,
        policy: SpoolFullPolicy = SpoolFullPolicy.BLOCK,
        max_outbox: int = 100_000,
    ) -> None:
        self.path = path
        self.max_frames = max_frames
        self.policy = policy
        self.max_outbox = max_outbox
        self._lock = threading.Condition()  # an RLock inside: transactions may nest calls
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(frames)")}
            for column, declaration in _FRAME_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE frames ADD COLUMN {column} {declaration}")
            start = time.time_ns() // 1000
            for key, value in (("next_sequence", start), ("next_delivery", start), ("dropped", 0)):
                self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool {path}: {exc}") from exc

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise SpoolError(f"cannot {what} in the spool {self.path}: {exc}") from exc
                raise
            self._lock.notify_all()

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _meta(self, key: str) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def _take(self, key: str) -> int:
        """The next value of a counter (inside a transaction)."""
        value = self._meta(key)
        self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value + 1, key))
        return value

    # -- frames ---------------------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Frames removed by the drop-oldest policy, over the spool's whole life."""
        with self._lock:
            return self._meta("dropped")

    def __len__(self) -> int:
        with self._lock:
            return self._count()

    def append(self, capture: Capture, timeout_s: float | None = None) -> int:
        """Store a capture durably and give it the next sequence number (recording a hot folder's file with
        it). When full: wait for room (block) or drop the oldest frame (drop-oldest). Raises
        :class:`SpoolError` if it cannot be written, or :class:`TimeoutError` when blocking for longer than
        ``timeout_s``."""
        with self._lock:
            room = self.policy is SpoolFullPolicy.DROP_OLDEST or self._lock.wait_for(
                lambda: self._closed or self._count() < self.max_frames, timeout_s
            )
            if not room:
                raise TimeoutError(f"the spool stayed full ({self.max_frames} frames) for {timeout_s} s")
            with self._transaction(f"spool part {capture.part_id}") as db:
                while self._count() >= self.max_frames:
                    self._drop_oldest(db)
                sequence = self._take("next_sequence")
                db.execute(
                    "INSERT INTO frames (sequence, part_id, captured_at, encoding, width, height, origin, data) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
                if capture.file is not None:
                    file = capture.file
                    db.execute(
                        "INSERT OR REPLACE INTO captured VALUES (?, ?, ?, ?, NULL)",
                        (file.path, file.size, file.mtime_ns, sequence),
                    )
            return sequence

    def _drop_oldest(self, db: sqlite3.Connection) -> None:
        sequence, part = db.execute("SELECT sequence, part_id FROM frames ORDER BY sequence LIMIT 1").fetchone()
        db.execute("DELETE FROM frames WHERE sequence = ?", (sequence,))
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'dropped'")
        db.execute("UPDATE captured SET outcome = ? WHERE sequence = ?", (FileOutcome.DROPPED.value, sequence))
        logger.warning(
            "spool full (%d frames): dropped frame %d (part %s), the oldest not yet judged",
            self.max_frames,
            sequence,
            part,
        )

    def pending(self, after: int = -1, limit: int = 64) -> list[SpooledFrame]:
        """The oldest frames not yet answered with a sequence above ``after``, in order."""
        rows = self._query(
            f"SELECT {_FRAME_FIELDS} FROM frames WHERE answered = 0 AND sequence > ? ORDER BY sequence LIMIT ?",
            (after, limit),
        )
        return [_frame(row) for row in rows]

    def due(self, now_s: float, exclude: frozenset[int] = frozenset(), limit: int = 8) -> list[SpooledFrame]:
        """Answered frames whose retry time (wall clock, ``now_s``) has come, oldest first, but ``exclude``."""
        rows = self._query(
            f"SELECT {_FRAME_FIELDS} FROM frames WHERE answered = 1 AND retry_at <= ? ORDER BY sequence LIMIT ?",
            (now_s, limit + len(exclude)),
        )
        return [frame for frame in map(_frame, rows) if frame.sequence not in exclude][:limit]

    def next_retry_at(self) -> float | None:
        """When the earliest answered frame may be sent again (wall clock), None when none waits."""
        value = self._query("SELECT MIN(retry_at) FROM frames WHERE answered = 1")[0][0]
        return None if value is None else float(value)

    @property
    def answered(self) -> int:
        """Frames answered with a transient ERROR and waiting to be judged."""
        return int(self._query("SELECT COUNT(*) FROM frames WHERE answered = 1")[0][0])

    def finish(self, sequence: int, result: pb.InspectionResult, *, late: bool) -> Delivery | None:
        """The frame's final verdict: it goes to the outbox and the frame leaves the spool, in one transaction
        (its hot-folder file, if any, is marked judged or error). A frame no longer in the spool already has its
        verdict in the outbox (a second answer to a frame sent twice): nothing is handed on again (None)."""
        with self._transaction(f"hand on the verdict of frame {sequence}") as db:
            if not _spooled(db, sequence):
                return None
            delivery = self._outbox_row(db, sequence, result, late=late, retrying=False)
            db.execute("DELETE FROM frames WHERE sequence = ?", (sequence,))
            judged = result.verdict in (pb.VERDICT_PASS, pb.VERDICT_FAIL, pb.VERDICT_REVIEW)
            outcome = FileOutcome.JUDGED if judged else FileOutcome.ERROR
            db.execute("UPDATE captured SET outcome = ? WHERE sequence = ?", (outcome.value, sequence))
        return delivery

    def defer(self, sequence: int, result: pb.InspectionResult, *, retry_at: float, hand_on: bool) -> Delivery | None:
        """A transient ERROR: the frame stays, answered, to be sent again at ``retry_at`` (wall clock); with
        ``hand_on`` the ERROR itself goes to the outbox (marked retrying), in the same transaction."""
        with self._transaction(f"keep frame {sequence} for a retry") as db:
            if not _spooled(db, sequence):
                return None  # judged meanwhile (a late ERROR for a frame sent twice): nothing to keep or hand on
            db.execute(
                "UPDATE frames SET answered = 1, attempts = attempts + 1, retry_at = ? WHERE sequence = ?",
                (retry_at, sequence),
            )
            if not hand_on:
                return None
            return self._outbox_row(db, sequence, result, late=False, retrying=True)

    def wait_for_frames(self, after: int, timeout_s: float) -> bool:
        """Block until an unanswered frame above ``after`` exists (or the timeout passes); for a worker thread."""
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
        found = self._db.execute("SELECT 1 FROM frames WHERE answered = 0 AND sequence > ? LIMIT 1", (after,))
        return found.fetchone() is not None

    # -- the outbox -----------------------------------------------------------------------------------------

    def _outbox_row(
        self, db: sqlite3.Connection, sequence: int, result: pb.InspectionResult, *, late: bool, retrying: bool
    ) -> Delivery:
        delivery = self._take("next_delivery")
        db.execute(
            "INSERT INTO outbox VALUES (?, ?, ?, ?, ?)",
            (delivery, sequence, int(late), int(retrying), result.SerializeToString()),
        )
        db.execute("DELETE FROM outbox WHERE delivery <= ?", (delivery - self.max_outbox,))
        return Delivery(delivery, result, late=late, retrying=retrying)

    @property
    def last_delivery(self) -> int:
        """The newest outbox id handed out (one below the first, for a spool that has handed on nothing)."""
        with self._lock:
            return self._meta("next_delivery") - 1

    def deliveries(self, after: int, limit: int = 256) -> list[Delivery]:
        """Outbox rows above ``after``, in order (rows already pruned are not there: see ``max_outbox``)."""
        rows = self._query(
            "SELECT delivery, late, retrying, result FROM outbox WHERE delivery > ? ORDER BY delivery LIMIT ?",
            (after, limit),
        )
        return [
            Delivery(delivery, pb.InspectionResult.FromString(result), late=bool(late), retrying=bool(retrying))
            for delivery, late, retrying, result in rows
        ]

    def cursor(self, sink: str) -> int | None:
        """The newest delivery ``sink`` confirmed, as last saved; None for an output the spool has not seen."""
        rows = self._query("SELECT delivery FROM cursors WHERE sink = ?", (sink,))
        return int(rows[0][0]) if rows else None

    def save_cursors(self, cursors: Mapping[str, int]) -> None:
        """Record what each output confirmed (never moving a cursor back) and prune the outbox rows that
        every output has."""
        with self._transaction("save the outputs' positions") as db:
            db.executemany(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (sink) DO UPDATE "
                "SET delivery = MAX(delivery, excluded.delivery)",
                list(cursors.items()),
            )
            names = list(cursors)
            marks = ", ".join("?" * len(names))
            oldest = db.execute(f"SELECT MIN(delivery) FROM cursors WHERE sink IN ({marks})", names).fetchone()[0]
            if oldest is None:  # no outputs at all: nothing will ever read the outbox
                oldest = self._meta("next_delivery")
            db.execute("DELETE FROM outbox WHERE delivery <= ?", (oldest,))

    # -- the captured-files ledger of a hot folder ----------------------------------------------------------

    def captured_files(self) -> set[CapturedFile]:
        """Every file in the ledger (captured, or found unreadable), however it ended."""
        return {CapturedFile(*row) for row in self._query("SELECT path, size, mtime_ns FROM captured")}

    def note_unreadable(self, file: CapturedFile) -> None:
        """A file the agent cannot read as an image: remembered, so it is neither sent nor tried again."""
        with self._transaction(f"note the unreadable file {file.path}") as db:
            db.execute(
                "INSERT OR REPLACE INTO captured VALUES (?, ?, ?, NULL, ?)",
                (file.path, file.size, file.mtime_ns, FileOutcome.UNREADABLE.value),
            )

    def ended_files(self, outcomes: frozenset[FileOutcome]) -> list[tuple[CapturedFile, FileOutcome]]:
        """Files whose frame ended in one of ``outcomes``, oldest first."""
        if not outcomes:
            return []
        names = [outcome.value for outcome in outcomes]
        rows = self._query(
            f"SELECT path, size, mtime_ns, outcome FROM captured WHERE outcome IN ({', '.join('?' * len(names))}) "
            "ORDER BY sequence",
            tuple(names),
        )
        return [(CapturedFile(path, size, mtime_ns), FileOutcome(o)) for path, size, mtime_ns, o in rows]

    @property
    def files_in_flight(self) -> int:
        """Captured files whose frame has not ended yet."""
        return int(self._query("SELECT COUNT(*) FROM captured WHERE outcome IS NULL")[0][0])

    def forget_files(self, files: list[CapturedFile]) -> None:
        """Drop ended files from the ledger (moved away, or gone from the folder): a file that comes back under
        the same name is a new one."""
        with self._transaction("forget captured files") as db:
            db.executemany(
                "DELETE FROM captured WHERE path = ? AND size = ? AND mtime_ns = ? AND outcome IS NOT NULL",
                [(f.path, f.size, f.mtime_ns) for f in files],
            )


def _spooled(db: sqlite3.Connection, sequence: int) -> bool:
    return db.execute("SELECT 1 FROM frames WHERE sequence = ?", (sequence,)).fetchone() is not None
