"""The log filter (app/logs.py): a value a caller sent cannot forge or hide a log line."""
from __future__ import annotations

import io
import logging

import pytest

from app.logs import NoToken, OneLine, Throttle, plural


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


@pytest.mark.parametrize(("count", "shown"), [(0, "0 events"), (1, "1 event"), (2, "2 events"), (1000, "1000 events")])
def test_a_count_takes_the_noun_it_needs(count, shown):
    assert plural(count, "event") == shown


def test_an_irregular_plural_is_given():
    assert (plural(1, "entry", "entries"), plural(3, "entry", "entries")) == ("1 entry", "3 entries")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_warning_is_logged_once_a_minute_with_a_count(caplog):
    clock = Clock()
    throttle = Throttle(logging.getLogger("tests.throttle"), period=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="tests.throttle"):
        for second in range(150):  # every second for two and a half minutes
            clock.now = 1000.0 + second
            throttle.warning("%s not checked: its events wait", plural(second % 2 + 1, "topic"))
    assert [r.getMessage() for r in caplog.records] == [
        "1 topic not checked: its events wait",
        "1 topic not checked: its events wait (and 59 more like it in the last 60 s)",
        "1 topic not checked: its events wait (and 59 more like it in the last 60 s)",
    ]
    assert {r.levelno for r in caplog.records} == {logging.WARNING}


def test_messages_of_different_formats_are_throttled_apart(caplog):
    clock = Clock()
    throttle = Throttle(logging.getLogger("tests.throttle"), clock=clock)
    with caplog.at_level(logging.WARNING, logger="tests.throttle"):
        for _ in range(3):
            throttle.warning("one thing: %s", "a")
            throttle.error("another thing: %s", "b")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "one thing: a"), ("ERROR", "another thing: b")]


@pytest.mark.parametrize(("query", "shown"), [
    ("token=s3cret-s3cret-s3cret", "token=…"),
    ("a=1&token=s3cret&b=2", "a=1&token=…&b=2"),
    ("validate=true", "validate=true"),
])
def test_the_debuggers_token_never_reaches_the_access_log(query, shown):
    """As gunicorn logs a request: its parts in a dict (``r`` the request line, ``q`` the query)."""
    atoms = {"h": "127.0.0.1", "r": f"GET /debug/1/1?{query} HTTP/1.1", "q": query, "s": "200"}
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '%(h)s "%(r)s" %(s)s', (atoms,), None)
    assert NoToken().filter(record) is True
    assert record.getMessage() == f'127.0.0.1 "GET /debug/1/1?{shown} HTTP/1.1" 200'
