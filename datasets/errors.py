"""Errors of the datasets part that a user can act on (the ``lineqa`` command prints them as one line)."""

from __future__ import annotations

from pathlib import Path


class DatasetError(Exception):
    """Root of the datasets part's user-facing errors."""


class DatasetNotFoundError(DatasetError):
    """No such dataset, version, pool or cluster for this tenant (also what another tenant's dataset, or a
    cluster the tenant is not a member of, looks like)."""


class DatasetFormatError(DatasetError):
    """An annotation file cannot be read: which file, which line (when known), and what was wrong."""

    def __init__(self, file: Path | str, message: str, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.reason = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")
