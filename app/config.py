"""Every setting of the collector, its type and default, read from the environment once."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the service cannot run with; the message names the variable."""


def _text(name: str, default: str) -> Callable[[Mapping[str, str]], str]:
    def read(env: Mapping[str, str]) -> str:
        value = env.get(name, default).strip()
        if not value:
            raise ConfigError(f"{name} must not be empty")
        return value

    return read


def _int(name: str, default: int, low: int, high: int) -> Callable[[Mapping[str, str]], int]:
    def read(env: Mapping[str, str]) -> int:
        raw = env.get(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return read


def _choice(name: str, default: str, choices: tuple[str, ...]) -> Callable[[Mapping[str, str]], str]:
    def read(env: Mapping[str, str]) -> str:
        value = env.get(name, default).strip().lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    return read


def _bool(name: str, default: bool) -> Callable[[Mapping[str, str]], bool]:
    def read(env: Mapping[str, str]) -> bool:
        value = env.get(name, str(default)).strip().lower()
        if value not in ("true", "false"):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value == "true"

    return read


def _topic_template(env: Mapping[str, str]) -> str:
    name = "COLLECTOR_TOPIC_TEMPLATE"
    value = _text(name, "events.{aid}")(env)
    if value.count("{aid}") != 1:
        raise ConfigError(f"{name} must contain {{aid}} exactly once, got {value!r}")
    # The longest id (a UUID) must still make a legal Kafka topic name.
    example = value.replace("{aid}", "0" * 36)
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", example):
        raise ConfigError(
            f"{name} must give a legal Kafka topic name (letters, digits, '.', '_', '-',"
            f" at most 249 characters with a 36-character id), got {value!r}"
        )
    return value


def _servers(env: Mapping[str, str]) -> list[str]:
    name = "KAFKA_BOOTSTRAP_SERVERS"
    servers = [s.strip() for s in _text(name, "127.0.0.1:9092")(env).split(",") if s.strip()]
    for server in servers:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be a comma-separated host:port list, got {server!r}")
    return servers


def _origins(env: Mapping[str, str]) -> list[str] | str:
    name = "COLLECTOR_CORS_ORIGINS"
    value = _text(name, "*")(env)
    if value == "*":
        return value
    origins = [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"{name} must be * or a comma-separated list of origins such as "
                              f"https://www.example.com, got {origin!r}")
    return origins


def _registry(env: Mapping[str, str]) -> str | None:
    return env.get("COLLECTOR_REGISTRY", "").strip() or None


def _topic_size(name: str) -> Callable[[Mapping[str, str]], int]:
    read_int = _int(name, -1, -1, 10_000)

    def read(env: Mapping[str, str]) -> int:
        value = read_int(env)
        if value == 0:
            raise ConfigError(f"{name} must be -1 (the broker's default) or a positive number, got 0")
        return value

    return read


#: Flask config key -> reader of the environment. The README's configuration table mirrors it.
SETTINGS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "KAFKA_BOOTSTRAP_SERVERS": _servers,
    "COLLECTOR_TOPIC_TEMPLATE": _topic_template,
    "COLLECTOR_TOPIC_PARTITIONS": _topic_size("COLLECTOR_TOPIC_PARTITIONS"),
    "COLLECTOR_TOPIC_REPLICATION": _topic_size("COLLECTOR_TOPIC_REPLICATION"),
    "COLLECTOR_REGISTRY": _registry,
    "COLLECTOR_MAX_DEPTH": _int("COLLECTOR_MAX_DEPTH", 10, 2, 100),
    "COLLECTOR_MAX_FIELDS": _int("COLLECTOR_MAX_FIELDS", 100, 10, 100_000),
    "COLLECTOR_MAX_STRING": _int("COLLECTOR_MAX_STRING", 8192, 64, 1_000_000),
    "COLLECTOR_MAX_KEY": _int("COLLECTOR_MAX_KEY", 128, 8, 10_000),
    "COLLECTOR_MAX_BATCH": _int("COLLECTOR_MAX_BATCH", 100, 1, 10_000),
    "COLLECTOR_MAX_BODY_BYTES": _int("COLLECTOR_MAX_BODY_BYTES", 64 * 1024, 1024, 900 * 1024),
    "COLLECTOR_PROXY_HOPS": _int("COLLECTOR_PROXY_HOPS", 0, 0, 5),
    "COLLECTOR_READY_MAX_AGE_MS": _int("COLLECTOR_READY_MAX_AGE_MS", 10_000, 1000, 600_000),
    "COLLECTOR_LOG_FORMAT": _choice("COLLECTOR_LOG_FORMAT", "text", ("text", "json")),
    "COLLECTOR_BODY_TIMEOUT_MS": _int("COLLECTOR_BODY_TIMEOUT_MS", 10_000, 100, 600_000),
    "COLLECTOR_CORS_ORIGINS": _origins,
    "COLLECTOR_CORS_MAX_AGE": _int("COLLECTOR_CORS_MAX_AGE", 7200, 0, 86_400),
    "COLLECTOR_MAX_PENDING": _int("COLLECTOR_MAX_PENDING", 10_000, 1, 10_000_000),
    "COLLECTOR_MAX_PENDING_BYTES": _int(
        "COLLECTOR_MAX_PENDING_BYTES", 32 * 1024 * 1024, 64 * 1024, 8 * 1024**3
    ),
    "COLLECTOR_KAFKA_ACKS": _choice("COLLECTOR_KAFKA_ACKS", "all", ("all", "1")),
    # Events wait in memory up to the send interval plus the linger before they are sent: the
    # sender thread hands them over in bursts, so kafka-python need not linger long itself.
    "COLLECTOR_SEND_INTERVAL_MS": _int("COLLECTOR_SEND_INTERVAL_MS", 50, 1, 1000),
    "COLLECTOR_KAFKA_LINGER_MS": _int("COLLECTOR_KAFKA_LINGER_MS", 5, 0, 1000),
    # Under the producer's 1 MB request limit; grown as records come, not allocated ahead.
    "COLLECTOR_KAFKA_BATCH_BYTES": _int("COLLECTOR_KAFKA_BATCH_BYTES", 256 * 1024, 1024, 1_000_000),
    "COLLECTOR_KAFKA_COMPRESSION": _choice(
        "COLLECTOR_KAFKA_COMPRESSION", "none", ("none", "gzip", "snappy", "lz4", "zstd")
    ),
    "COLLECTOR_KAFKA_MAX_BLOCK_MS": _int("COLLECTOR_KAFKA_MAX_BLOCK_MS", 1000, 10, 60_000),
    "COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS": _int(
        "COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS", 30_000, 3000, 600_000
    ),
    # gunicorn's graceful_timeout is this plus 5 s (gunicorn.conf.py), so no flush is cut short.
    "COLLECTOR_SHUTDOWN_FLUSH_MS": _int("COLLECTOR_SHUTDOWN_FLUSH_MS", 5000, 0, 60_000),
    "COLLECTOR_SPOOL_DIR": _text("COLLECTOR_SPOOL_DIR", "spool"),
    "COLLECTOR_SPOOL_MAX_BYTES": _int("COLLECTOR_SPOOL_MAX_BYTES", 1024**3, 1024**2, 2**50),
    "COLLECTOR_SPOOL_SEGMENT_BYTES": _int("COLLECTOR_SPOOL_SEGMENT_BYTES", 16 * 1024**2, 1024**2, 1024**3),
    "COLLECTOR_SPOOL_FSYNC_MS": _int("COLLECTOR_SPOOL_FSYNC_MS", 1000, 0, 60_000),
    "COLLECTOR_SPOOL_REPLAY_MS": _int("COLLECTOR_SPOOL_REPLAY_MS", 1000, 50, 600_000),
    # One sender per host was faster than one per worker in every setup measured (docs/benchmarks.md).
    "COLLECTOR_SENDER": _choice("COLLECTOR_SENDER", "host", ("host", "worker")),
    "COLLECTOR_DEAD_LETTER_AFTER_MS": _int("COLLECTOR_DEAD_LETTER_AFTER_MS", 300_000, 1000, 7 * 86_400_000),
    "COLLECTOR_DOCS": _bool("COLLECTOR_DOCS", True),
}


def from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting from ``env`` (default: the process environment), failing on a bad value."""
    env = os.environ if env is None else env
    return {key: read(env) for key, read in SETTINGS.items()}
