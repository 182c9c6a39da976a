"""The camera spool: durable, ordered, bounded, and its sequence numbers survive restarts."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from lineqa.protos.lineqa.inspection.v1 import inspection_pb2 as pb
from lineqa.serving.camera.model import Capture
from lineqa.serving.camera.spool import Spool, SpoolFullPolicy


def capture(part: str) -> Capture:
    return Capture(part.encode() * 10, pb.IMAGE_ENCODING_JPEG, part, datetime.now(timezone.utc), f"{part}.jpg")


def test_frames_come_back_in_order_and_leave_only_when_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    sequences = [spool.append(capture(f"P{i}")) for i in range(5)]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
    assert sequences[0] > time.time_ns() // 1000 - 60_000_000  # a fresh spool counts from the clock
    assert [f.capture.part_id for f in spool.pending(limit=10)] == [f"P{i}" for i in range(5)]
    assert [f.sequence for f in spool.pending(after=sequences[2])] == sequences[3:]
    spool.done(sequences[0])
    assert len(spool) == 4 and spool.pending(limit=1)[0].capture.data == b"P1" * 10


def test_sequences_and_pending_frames_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    first = [spool.append(capture(f"P{i}")) for i in range(3)]
    spool.done(first[0])
    spool.close()
    again = Spool(tmp_path / "s.db")
    assert [f.sequence for f in again.pending()] == first[1:]
    assert again.append(capture("P3")) == first[-1] + 1


def test_drop_oldest_counts_every_loss(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_frames=3, policy=SpoolFullPolicy.DROP_OLDEST)
    for i in range(5):
        spool.append(capture(f"P{i}"))
    assert [f.capture.part_id for f in spool.pending()] == ["P2", "P3", "P4"]
    assert spool.dropped == 2
    spool.close()
    assert Spool(tmp_path / "s.db").dropped == 2


def test_block_holds_the_trigger_until_there_is_room(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", max_frames=2, policy=SpoolFullPolicy.BLOCK)
    first = spool.append(capture("P0"))
    spool.append(capture("P1"))
    with pytest.raises(TimeoutError):
        spool.append(capture("P2"), timeout_s=0.2)
    threading.Timer(0.3, spool.done, args=(first,)).start()
    started = time.monotonic()
    spool.append(capture("P2"), timeout_s=5)
    assert 0.2 < time.monotonic() - started < 3 and spool.dropped == 0
    assert [f.capture.part_id for f in spool.pending()] == ["P1", "P2"]
