"""Where lineqa keeps its embedded defaults (database, image store, datasets, model repository, runs), and the
environment variables a container configures the commands with. What lineqa creates there is private to its
user (folders 0700): the home holds quality records, images and hashes of secrets."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``$LINEQA_HOME`` if set, else ``~/.lineqa``: one folder holds everything a single machine needs."""
    return Path(os.environ.get("LINEQA_HOME") or Path.home() / ".lineqa")


def env_default(name: str, fallback: str | None = None) -> str | None:
    """An option's default from the environment variable ``name`` (set and not empty), else ``fallback``.

    Containers and Kubernetes configure a command by environment rather than by its arguments; an option given
    on the command line still wins. Called while a command's parser is built, never at import time.
    """
    return os.environ.get(name) or fallback


def private_folder(path: Path) -> Path:
    """Create ``path`` and every missing parent readable by its owner only (0700); existing folders keep
    their mode."""
    missing = []
    folder = path
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
    return path
