"""Server time: every timestamp the review app writes is UTC from this clock, and every one it reads back is
made timezone-aware (SQLite hands timezone-aware columns back naive; they were stored as UTC)."""

from __future__ import annotations

from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
