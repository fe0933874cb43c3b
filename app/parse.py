"""How a setting's raw text is read: each parser takes the variable's name and its raw value,
and returns the value or raises ``ConfigError`` with a message that names the variable."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Parse = Callable[[str, str], Any]  # (variable, raw value) -> value; raises ConfigError


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


def text(name: str, raw: str) -> str:
    """Any text but blank."""
    if not raw.strip():
        raise ConfigError(f"{name} must not be empty")
    return raw.strip()


def optional(name: str, raw: str) -> str | None:
    """Any text; blank is None (unset)."""
    return raw.strip() or None


def whole(low: int, high: int) -> Parse:
    """A whole number from ``low`` to ``high``."""
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return parse


def one_of(*choices: str) -> Parse:
    """One of ``choices``, in any case."""
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def flag(name: str, raw: str) -> bool:
    """``true`` or ``false``, in any case."""
    value = raw.strip().lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return value == "true"


def topic_size(name: str, raw: str) -> int:
    """``-1`` (the broker's default) or a positive number."""
    value: int = whole(-1, 10_000)(name, raw)
    if value == 0:
        raise ConfigError(f"{name} must be -1 (the broker's default) or a positive number, got 0")
    return value


def topic_template(name: str, raw: str) -> str:
    """Contains ``{aid}`` once, and gives a legal Kafka topic name for the longest id (a UUID)."""
    value = text(name, raw)
    if value.count("{aid}") != 1:
        raise ConfigError(f"{name} must contain {{aid}} exactly once, got {value!r}")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value.replace("{aid}", "0" * 36)):
        raise ConfigError(
            f"{name} must give a legal Kafka topic name (letters, digits, '.', '_', '-',"
            f" at most 249 characters with a 36-character id), got {value!r}"
        )
    return value


def topic_name(name: str, raw: str) -> str:
    """A legal Kafka topic name."""
    value = text(name, raw)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value) or value in (".", ".."):
        raise ConfigError(f"{name} must be a legal Kafka topic name (letters, digits, '.', '_', '-',"
                          f" at most 249 characters), got {value!r}")
    return value


def token(name: str, raw: str) -> str | None:
    """Blank (unset: None), or a secret of at least 16 visible ASCII characters."""
    value = raw.strip()
    if value and not re.fullmatch(r"[!-~]{16,256}", value):
        raise ConfigError(f"{name} must be 16 to 256 visible ASCII characters (try: openssl rand -hex 24)")
    return value or None


def addresses(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated ``host:port`` list."""
    servers = tuple(s.strip() for s in text(name, raw).split(",") if s.strip())
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be a comma-separated host:port list, got {server!r}")
    return servers


def listen(name: str, raw: str) -> tuple[str, ...]:
    """gunicorn's ``bind``: a comma-separated list of ``host:port`` or ``unix:PATH``."""
    places = tuple(p.strip() for p in text(name, raw).split(",") if p.strip())
    for place in places:
        if not place.startswith("unix:"):
            addresses(name, place)
        elif place == "unix:":
            raise ConfigError(f"{name} must name a socket's path after unix:, got {raw!r}")
    return places


def origins(name: str, raw: str) -> str | tuple[str, ...]:
    """``*`` or a comma-separated list of origins."""
    value = text(name, raw)
    if value == "*":
        return value
    listed = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in listed:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"{name} must be * or a comma-separated list of origins such as "
                              f"https://www.example.com, got {origin!r}")
    return listed
