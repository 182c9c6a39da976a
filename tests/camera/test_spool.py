"""The camera spool: durable, ordered, bounded; its sequence numbers survive restarts; a verdict and its
frame's removal are one transaction; transient errors keep frames for a retry; the outbox is pruned of what
every output confirmed; the hot-folder ledger survives the spool's restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Capture, CapturedFile
from lineqa.serving.camera.spool import FileOutcome, Spool, SpoolError, SpoolFullPolicy


def capture(part: str, file: CapturedFile | None = None) -> Capture:
    return Capture(
        part.encode() * 10, pb.IMAGE_ENCODING_JPEG, part, datetime.now(timezone.utc), f"{part}.jpg", file=file
    )


def verdict(
    sequence: int, value: pb.Verdict = pb.VERDICT_PASS, code: pb.ErrorCode = pb.ERROR_CODE_UNSPECIFIED
) -> pb.InspectionResult:
    result = pb.InspectionResult(verdict=value)
    result.frame.sequence = sequence
    if value == pb.VERDICT_ERROR:
        result.error.code = code
    return result


def test_frames_come_back_in_order_and_leave_only_when_finished(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    sequences = [spool.append(capture(f"P{i}")) for i in range(5)]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
    assert sequences[0] > time.time_ns() // 1000 - 60_000_000  # a fresh spool counts from the clock
    assert [f.capture.part_id for f in spool.pending(limit=10)] == [f"P{i}" for i in range(5)]
    assert [f.sequence for f in spool.pending(after=sequences[2])] == sequences[3:]
    delivery = spool.finish(sequences[0], verdict(sequences[0]), late=False)
    assert len(spool) == 4 and spool.pending(limit=1)[0].capture.data == b"P1" * 10
    assert spool.deliveries(delivery.id - 1) == [delivery]
    assert delivery.id == spool.last_delivery and delivery.id > time.time_ns() // 1000 - 60_000_000


def test_sequences_and_pending_frames_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    first = [spool.append(capture(f"P{i}")) for i in range(3)]
    handed = spool.finish(first[0], verdict(first[0]), late=False)
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert [f.sequence for f in again.pending()] == first[1:]
    assert again.append(capture("P3")) == first[-1] + 1
    assert again.finish(first[1], verdict(first[1]), late=False).id == handed.id + 1


def test_a_transient_error_keeps_the_frame_for_a_retry(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    a, b = spool.append(capture("A")), spool.append(capture("B"))
    error = verdict(a, pb.VERDICT_ERROR, pb.ERROR_CODE_MODEL_UNAVAILABLE)
    answer = spool.defer(a, error, retry_at=time.time() + 0.3, hand_on=True)
    assert answer is not None and answer.retrying and not answer.late
    assert [f.sequence for f in spool.pending()] == [b]  # A is answered: not sent again as a new frame...
    assert spool.due(time.time()) == [] and spool.answered == 1
    assert spool.next_retry_at() == pytest.approx(time.time() + 0.3, abs=0.1)
    time.sleep(0.35)
    (due,) = spool.due(time.time())  # ... but as a retry, once its time has come
    assert (due.sequence, due.answered, due.attempts) == (a, True, 1)
    assert spool.due(time.time(), exclude=frozenset({a})) == []
    assert spool.defer(a, error, retry_at=time.time(), hand_on=False) is None  # failed again: nothing handed on
    spool.close()
    spool = Spool(tmp_path / "s.db")
    (due,) = spool.due(time.time())
    assert due.attempts == 2
    late = spool.finish(a, verdict(a, pb.VERDICT_FAIL), late=True)
    assert [(d.id, d.late, d.retrying) for d in spool.deliveries(0)] == [
        (answer.id, False, True),
        (late.id, True, False),
    ]
    assert len(spool) == 1 and spool.answered == 0


def test_the_outbox_is_pruned_of_what_every_output_confirmed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_outbox=3)
    ids = []
    for part in "ABCD":
        sequence = spool.append(capture(part))
        ids.append(spool.finish(sequence, verdict(sequence), late=False).id)
    assert [d.id for d in spool.deliveries(0)] == ids[1:]  # at most 3 rows
    spool.save_cursors({"jsonl": ids[2], "mqtt": ids[1]})
    assert [d.id for d in spool.deliveries(0)] == ids[2:]
    spool.save_cursors({"jsonl": ids[0], "mqtt": ids[3]})  # a cursor never moves back
    assert spool.cursor("jsonl") == ids[2] and spool.cursor("mqtt") == ids[3] and spool.cursor("new") is None
    assert [d.id for d in spool.deliveries(0)] == ids[3:]


def test_drop_oldest_counts_every_loss(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_frames=3, policy=SpoolFullPolicy.DROP_OLDEST)
    file = CapturedFile("P0.jpg", 40, 123)
    spool.append(capture("P0", file))
    for i in range(1, 5):
        spool.append(capture(f"P{i}"))
    assert [f.capture.part_id for f in spool.pending()] == ["P2", "P3", "P4"]
    assert spool.dropped == 2
    assert spool.ended_files(frozenset({FileOutcome.DROPPED})) == [(file, FileOutcome.DROPPED)]
    spool.close()
    assert Spool(tmp_path / "s.db").dropped == 2


def test_block_holds_the_trigger_until_there_is_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_frames=2, policy=SpoolFullPolicy.BLOCK)
    first = spool.append(capture("P0"))
    spool.append(capture("P1"))
    with pytest.raises(TimeoutError):
        spool.append(capture("P2"), timeout_s=0.2)
    threading.Timer(0.3, spool.finish, args=(first, verdict(first)), kwargs={"late": False}).start()
    started = time.monotonic()
    spool.append(capture("P2"), timeout_s=5)
    assert 0.2 < time.monotonic() - started < 3 and spool.dropped == 0
    assert [f.capture.part_id for f in spool.pending()] == ["P1", "P2"]


def test_the_captured_files_ledger_survives_the_spools_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    good, bad, broken = CapturedFile("a.jpg", 10, 1), CapturedFile("b.jpg", 20, 2), CapturedFile("c.jpg", 0, 3)
    judged = spool.append(capture("a", good))
    failed = spool.append(capture("b", bad))
    spool.note_unreadable(broken)
    spool.close()

    spool = Spool(tmp_path / "s.db")
    assert spool.captured_files() == {good, bad, broken} and spool.files_in_flight == 2
    spool.finish(judged, verdict(judged, pb.VERDICT_FAIL), late=False)
    spool.finish(failed, verdict(failed, pb.VERDICT_ERROR, pb.ERROR_CODE_INVALID_IMAGE), late=False)
    assert spool.files_in_flight == 0
    assert spool.ended_files(frozenset({FileOutcome.JUDGED})) == [(good, FileOutcome.JUDGED)]
    not_judged = frozenset({FileOutcome.ERROR, FileOutcome.UNREADABLE})
    assert sorted(spool.ended_files(not_judged), key=str) == sorted(
        [(bad, FileOutcome.ERROR), (broken, FileOutcome.UNREADABLE)], key=str
    )
    spool.forget_files([good, broken])
    assert spool.captured_files() == {bad}


def test_a_spool_of_the_first_format_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE frames (sequence INTEGER PRIMARY KEY, part_id TEXT NOT NULL, captured_at TEXT NOT NULL,"
            " encoding INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, origin TEXT NOT NULL,"
            " data BLOB NOT NULL);"
            "INSERT INTO meta VALUES ('next_sequence', 101), ('dropped', 0);"
            "INSERT INTO frames VALUES (100, 'P', '2025-01-01T00:00:00+00:00', 1, 0, 0, 'P.jpg', x'ff');"
        )
    spool = Spool(path)
    (frame,) = spool.pending()
    assert (frame.sequence, frame.answered, frame.attempts) == (100, False, 0)
    assert spool.append(capture("Q")) == 101


def test_an_unwritable_spool_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "s.db").mkdir()
    with pytest.raises(SpoolError, match="cannot open the spool"):
        Spool(tmp_path / "s.db")
