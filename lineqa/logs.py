"""Logging for lineqa's entry points: one format, untrusted text escaped, no SQL echo.

Log lines carry strings that come from outside (camera, line and part ids, user names, file names): a CR or LF
in one would forge a second log line, an escape sequence would repaint a terminal. :class:`EscapingFormatter`
writes every control character of a record's message as a visible escape (``\\n``, ``\\x1b``); a traceback it
appends is lineqa's own and keeps its lines. SQLAlchemy's engine logger is kept at WARNING even with
``--verbose``: at DEBUG it would print rows (token and password hashes, CSRF tokens), which lineqa's logs
never hold (RELIABILITY.md 20). Handlers are configured here, by ``main()`` functions only.
"""

from __future__ import annotations

import logging
import re
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with every control character written as a visible escape."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        saved = record.message
        record.message = escape(saved)
        try:
            return super().formatMessage(record)
        finally:
            record.message = saved


def configure(verbose: bool = False, stream: TextIO | None = None) -> None:
    """The root handler of a lineqa command: ``stream`` (stderr), :class:`EscapingFormatter`, DEBUG with
    ``verbose``."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
