"""Where lineqa keeps its embedded defaults: database, image store, datasets, model repository, runs."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``$LINEQA_HOME`` if set, else ``~/.lineqa``: one folder holds everything a single machine needs."""
    return Path(os.environ.get("LINEQA_HOME") or Path.home() / ".lineqa")
