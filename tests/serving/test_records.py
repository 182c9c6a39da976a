"""Records on SQLite and on the loopback PostgreSQL server: same schema, same behaviour; the original verdict is
never rewritten (RELIABILITY.md 10: the database refuses UPDATE and DELETE)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from lineqa.serving.database import DatabaseError, open_database, sqlite_url
from lineqa.serving.records import InspectionRecord, RecordStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    sqlite = request.param == "sqlite"
    url = sqlite_url(tmp_path / "records.db") if sqlite else request.getfixturevalue("empty_postgres_url")
    store = RecordStore(open_database(url))
    yield store
    store.close()


def record(sequence: int, camera: str = "cam-1", tenant: str = "acme", verdict: str = "FAIL") -> InspectionRecord:
    return InspectionRecord(
        record_id=str(uuid.uuid4()), tenant=tenant, line_id="line-1", camera_id=camera, sequence=sequence,
        part_id="SN1", capture_time=datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc),
        receive_time=datetime.now(timezone.utc), model_name="pcb", model_version=3, recipe_id="top",
        recipe_version="ab" * 32, image_sha256="cd" * 32, image_key=None, verdict=verdict, error_code="",
        defects_json="[]", service_version="0.1.0", result=b"\x08\x02",
    )  # fmt: skip


def test_commit_then_find(store: RecordStore) -> None:
    stored, existed = store.commit(record(1))
    assert not existed
    found = store.find("acme", "cam-1", 1)
    assert found is not None and found.record_id == stored.record_id and found.result == b"\x08\x02"
    assert found.capture_time is not None and found.capture_time.replace(tzinfo=timezone.utc).hour == 8
    assert store.find("acme", "cam-1", 2) is None and store.find("globex", "cam-1", 1) is None


def test_same_frame_twice_keeps_the_first(store: RecordStore) -> None:
    first, _ = store.commit(record(7))
    again, existed = store.commit(record(7, verdict="PASS"))
    assert existed and again.record_id == first.record_id and again.verdict == "FAIL"
    assert store.count() == 1
    store.commit(record(7, tenant="globex"))  # the key is per tenant and camera
    store.commit(record(7, camera="cam-2"))
    assert store.count() == 3


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE inspections SET verdict = 'PASS'",
        "DELETE FROM inspections",
        "UPDATE inspections SET defects_json = '[{}]'",
    ],
)
def test_the_original_verdict_cannot_be_rewritten_or_removed(store: RecordStore, statement: str) -> None:
    """RELIABILITY.md 10: not by the service, not by its owner with plain SQL; the row stays as committed."""
    stored, _ = store.commit(record(5))
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    found = store.find("acme", "cam-1", 5)
    assert found is not None and (found.record_id, found.verdict, found.defects_json, found.result) == (
        stored.record_id, "FAIL", "[]", stored.result,
    )  # fmt: skip


def test_racing_connections_store_one_row(store: RecordStore) -> None:
    """Eight threads commit the same frame at once: one row, and every thread gets that row's id."""
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def commit() -> None:
        barrier.wait()
        stored, _ = store.commit(record(99))
        winners.append(stored.record_id)

    threads = [threading.Thread(target=commit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 1 and len(set(winners)) == 1 and len(winners) == 8


def test_sqlite_is_durable_by_configuration(tmp_path: Path) -> None:
    store = RecordStore(open_database(sqlite_url(tmp_path / "r.db")))
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    store.commit(record(1))
    with sqlite3.connect(tmp_path / "r.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_unreachable_database_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="cannot open the database"):
        open_database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(DatabaseError, match="cannot open the database"):
        open_database(sqlite_url(tmp_path / "missing-dir" / "r.db"))
