"""Where lineqa keeps its embedded defaults (database, image store, datasets, model repository, runs), and the
environment variables a container configures the commands with."""

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
