"""Server time: every timestamp the review app writes is UTC from this clock, and every one it reads back is
made timezone-aware (SQLite hands timezone-aware columns back naive; they were stored as UTC)."""

from __future__ import annotations

from datetime import datetime, timezone

from lineqa.db import as_utc

__all__ = ["as_utc", "now"]


def now() -> datetime:
    return datetime.now(timezone.utc)
