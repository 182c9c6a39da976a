"""Which version of a model the line uses, and the audit trail of every change to it.

    <repo>/<model>/promotions.jsonl     one JSON event per line, appended, never rewritten

``publish`` adds a version to the repository without putting it on the line; ``promote`` puts it there;
``rollback`` returns to the version promoted before. The events form a stack (promote pushes, rollback pops),
and the version on top is what a recipe that names no version gets. A model never promoted is served at its
newest version, as Triton itself would. Triton ignores files beside the version folders, so NVIDIA's Triton
and the embedded one read the same repository.

It is the model's audit trail (RELIABILITY.md 10): each event says who, when (server UTC), what and why, and
``previous`` is the version that was on the line before it, filled in by :meth:`PromotionLog.append` itself
under the file's lock, so no writer can leave it out or get it wrong.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineqa.serving.errors import ModelRepositoryError

PROMOTIONS_NAME = "promotions.jsonl"


@dataclass(frozen=True)
class PromotionEvent:
    action: str  # "publish", "promote", "rollback" or "adopt" (the version serving before any promotion)
    version: int
    at: str
    by: str
    reason: str = ""
    override: bool = False
    details: dict[str, Any] | None = None
    previous: int | None = None  # on the line before this event (None: never promoted before)


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return f"uid {os.getuid()}"


class PromotionLog:
    """The append-only event file of one model."""

    def __init__(self, model_folder: Path) -> None:
        self.path = Path(model_folder) / PROMOTIONS_NAME

    def events(self) -> list[PromotionEvent]:
        if not self.path.is_file():
            return []
        events = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                events.append(PromotionEvent(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ModelRepositoryError(f"{self.path}:{number}: unreadable promotion event: {exc}") from None
        return events

    def stack(self) -> list[int]:
        """Versions promoted and not rolled back, oldest first; the last one is on the line."""
        stack: list[int] = []
        for event in self.events():
            if event.action in ("promote", "adopt"):
                stack.append(event.version)
            elif event.action == "rollback" and stack:
                stack.pop()
        return stack

    def promoted(self) -> int | None:
        stack = self.stack()
        return stack[-1] if stack else None

    def append(self, event: PromotionEvent) -> PromotionEvent:
        """Append one event durably, with the version on the line before it; a lock keeps two writers' lines
        whole and their ``previous`` right. Returns the event as written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            event = replace(event, previous=self.promoted())
            handle.write(json.dumps(event.__dict__, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return event


def event(action: str, version: int, *, by: str | None = None, reason: str = "", override: bool = False,
          details: dict[str, Any] | None = None) -> PromotionEvent:  # fmt: skip
    """A new event stamped now, by the current user unless ``by`` names someone."""
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return PromotionEvent(action, version, at, by or current_user(), reason, override, details)
