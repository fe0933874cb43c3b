"""The parsers of settings: each gives the value, or a ``ConfigError`` that names the variable
and says what would do."""
from __future__ import annotations

import pytest

from app.parse import ConfigError, token, topic_name, whole


@pytest.mark.parametrize("raw, value", [("collector.rejects", "collector.rejects"), (" bad_rows-1 ", "bad_rows-1")])
def test_topic_names(raw, value):
    assert topic_name("T", raw) == value


@pytest.mark.parametrize("raw", ["", "..", ".", "re jects", "rejects/1", "x" * 250, "événements"])
def test_illegal_topic_names_are_refused(raw):
    with pytest.raises(ConfigError, match="^T must") as refused:
        topic_name("T", raw)
    assert "legal Kafka topic name" in str(refused.value) or "must not be empty" in str(refused.value)


@pytest.mark.parametrize("raw, value", [("", None), ("   ", None), (" 0123456789abcdef ", "0123456789abcdef"),
                                        ("A!~" * 10, "A!~" * 10)])
def test_tokens(raw, value):
    assert token("T", raw) == value


@pytest.mark.parametrize("raw", ["short", "0123456789abcde", "with a space inside it", "x" * 257, "é" * 20])
def test_weak_or_unsendable_tokens_are_refused(raw):
    with pytest.raises(ConfigError, match="^T must be 16 to 256 visible ASCII characters"):
        token("T", raw)


def test_whole_numbers_within_their_bounds():
    assert whole(0, 5)("W", " 5 ") == 5
    with pytest.raises(ConfigError, match="W must be between 0 and 5, got 6"):
        whole(0, 5)("W", "6")
