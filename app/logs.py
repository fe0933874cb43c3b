"""Logging helpers: a filter that keeps every record on one line, one that keeps the debugger's
token out of the access log, a warning that repeats logged
once a minute with a count, and counted nouns ("1 event", "2 events")."""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable


class OneLine(logging.Filter):
    """Escape control characters (newlines, ESC, ...) in a record's message, so that a value a
    caller sent (a path, a user agent) cannot forge or hide a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.isprintable():
            record.msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            record.args = None
        return True


SECRET_QUERY = re.compile(r"([?&]token=)[^&\s\"]*")


class NoToken(logging.Filter):
    """Blank a ``token=`` in the query of a request the access log shows (the live debugger's page
    is opened with ``?token=``, a secret); gunicorn passes the request's parts as a dict."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and "token=" in str(record.args.get("q", "")):
            record.args = {k: SECRET_QUERY.sub(r"\1…", v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` and the noun it takes: ``plural(1, "event")`` is "1 event", ``plural(2, "event")`` "2 events"."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


class Throttle:
    """Log a message that may come every second at most once a ``period``: its first time at once,
    then the next time after the period, saying how many like it were not logged meanwhile.

    Messages are told apart by their format string (the code's, never a caller's value), so the
    ones it remembers are as many as the code has.
    """

    def __init__(self, logger: logging.Logger, period: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.period = period
        self.clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # format -> (when last logged, how many since)
        self._lock = threading.Lock()

    def log(self, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` at ``level``, unless a message of this format was logged within the period."""
        now = self.clock()
        with self._lock:
            logged, since = self._last.get(message, (now - self.period, 0))
            if now - logged < self.period:
                self._last[message] = (logged, since + 1)
                return
            self._last[message] = (now, 0)
        if since:
            self.logger.log(level, message + " (and %d more like it in the last %.0f s)", *args, since, now - logged)
        else:
            self.logger.log(level, message, *args)

    def warning(self, message: str, *args: object) -> None:
        self.log(logging.WARNING, message, *args)

    def error(self, message: str, *args: object) -> None:
        self.log(logging.ERROR, message, *args)
