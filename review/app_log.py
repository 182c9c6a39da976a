"""The review app's structured log: one JSON line per request and per decision, for the plant's log shipper.

A line carries the time (UTC), level, logger and message, and the event's fields: for a request its id,
method, path (never the query string or the body), route, status, user, tenant and duration; for a decision
who decided what about which part. Session ids, CSRF tokens, passwords and cookies are never fields, and
JSON escapes whatever untrusted text a field holds. ``lineqa review serve`` installs it (:func:`install`);
the app only logs.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, TextIO

FIELDS = "fields"  # the ``extra`` key a log call puts its event's fields under


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra=`` for a log call: ``logger.info("...", extra=fields(event="request", status=200))``."""
    return {FIELDS: values}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def install(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send the review app's logs (``lineqa.review.*``) as JSON lines to ``stream`` (standard error), at ``level``
    or the finer level the command line asked for; for entry points."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    review = logging.getLogger("lineqa.review")
    review.handlers[:] = [handler]
    review.setLevel(min(level, logging.getLogger().getEffectiveLevel()))
    review.propagate = False
