"""Logging helpers: a filter that keeps every record on one line."""
from __future__ import annotations

import logging


class OneLine(logging.Filter):
    """Escape control characters (newlines, ESC, ...) in a record's message, so that a value a
    caller sent (a path, a user agent) cannot forge or hide a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            record.args = None
        return True
