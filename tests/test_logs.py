"""The log filter (app/logs.py): a value a caller sent cannot forge or hide a log line."""
from __future__ import annotations

import io
import logging

import pytest

from app.logs import OneLine


@pytest.mark.parametrize(("message", "args", "shown"), [
    pytest.param("user agent %s", ("curl/8.0",), "user agent curl/8.0", id="printable"),
    pytest.param("user agent %s", ("a\n[ERROR] forged",), "user agent a\\n[ERROR] forged", id="newline"),
    pytest.param("path %s", ("/x\r\n",), "path /x\\r\\n", id="crlf"),
    pytest.param("user agent %s", ("a\x85b",), "user agent a\\x85b", id="NEL"),
    pytest.param("user agent %s", ("a\u2028b",), "user agent a\\u2028b", id="line-separator"),
    pytest.param("user agent %s", ("\x1b[31mred",), "user agent \\x1b[31mred", id="escape"),
    pytest.param("two\nlines", None, "two\\nlines", id="in-the-message"),
])
def test_a_message_is_kept_on_one_line(message, args, shown):
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, message, args, None)
    assert OneLine().filter(record) is True  # escaped, never dropped
    assert record.getMessage() == shown


def test_a_handler_with_the_filter_writes_one_line_a_record():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(OneLine())  # as gunicorn.conf.py sets it up
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("got %r from %s", "x", "a\nb\u2028c")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["got 'x' from a\\nb\\u2028c"]
