"""Hashing the files bundles carry, on both ends."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=256)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """A file's SHA-256, remembered while its size and modification time stay the same."""
    stat = path.stat()
    return _digest(path, stat.st_mtime_ns, stat.st_size)
