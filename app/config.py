"""Every setting of the collector, declared once: its variable, type, default, bounds and meaning.

The app and ``gunicorn.conf.py`` read them through ``Settings.from_env()``; a bad value stops
either with a ``ConfigError`` that names the variable. The README's configuration table lists
the same variables and defaults (a test checks it).
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app

from .ids import ID_PATTERN
from .parse import ConfigError as ConfigError  # the settings' error, where they are read
from .parse import (
    Parse,
    addresses,
    flag,
    listen,
    one_of,
    optional,
    origins,
    text,
    token,
    topic_name,
    topic_size,
    topic_template,
    whole,
)


def setting(variable: str, default: str, parse: Parse, meaning: str) -> Any:
    """Declare a setting: its environment variable, its default as the environment would hold
    it, how it is read, and one line of meaning (the README's table says more)."""
    return dataclasses.field(metadata={"variable": variable, "default": default, "parse": parse, "meaning": meaning})


MiB = 1024**2
ID = re.compile(ID_PATTERN)  # any spelling of an id: events.007 is no rejects topic either


@dataclasses.dataclass(frozen=True)
class Settings:
    """The collector's settings, read once; the README's configuration table mirrors them."""

    kafka_bootstrap_servers: tuple[str, ...] = setting(
        "KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092", addresses, "Kafka's bootstrap servers")
    topic_template: str = setting("COLLECTOR_TOPIC_TEMPLATE", "events.{aid}", topic_template, "an account's topic")
    registry: str | None = setting(
        "COLLECTOR_REGISTRY", "", optional, "the registry file of accounts, trackers and vendors")
    topic_partitions: int = setting(
        "COLLECTOR_TOPIC_PARTITIONS", "-1", topic_size, "partitions of a topic the collector creates")
    topic_replication: int = setting(
        "COLLECTOR_TOPIC_REPLICATION", "-1", topic_size, "replication factor of a topic the collector creates")
    # At most 900 KiB: a record stays under the producer's 1 MB request limit.
    max_body_bytes: int = setting(
        "COLLECTOR_MAX_BODY_BYTES", "65536", whole(1024, 900 * 1024), "largest request body (413 above)")
    body_timeout_ms: int = setting(
        "COLLECTOR_BODY_TIMEOUT_MS", "10000", whole(100, 600_000), "a body that stops arriving gets a 408 after this")
    cors_origins: str | tuple[str, ...] = setting(
        "COLLECTOR_CORS_ORIGINS", "*", origins, "the origins whose pages may send events")
    cors_max_age: int = setting(
        "COLLECTOR_CORS_MAX_AGE", "7200", whole(0, 86_400), "seconds a browser may cache a preflight's answer")
    max_depth: int = setting("COLLECTOR_MAX_DEPTH", "10", whole(2, 100), "deepest nesting in an event")
    max_fields: int = setting(
        "COLLECTOR_MAX_FIELDS", "100", whole(10, 100_000), "keys of an object, items of an array in an event")
    max_string: int = setting("COLLECTOR_MAX_STRING", "8192", whole(64, 1_000_000), "characters in a string")
    max_key: int = setting("COLLECTOR_MAX_KEY", "128", whole(8, 10_000), "characters in a key")
    max_batch: int = setting("COLLECTOR_MAX_BATCH", "100", whole(1, 10_000), "events in one batch")
    max_pending: int = setting(
        "COLLECTOR_MAX_PENDING", "10000", whole(1, 10_000_000), "events the sender holds in memory ahead of Kafka")
    max_pending_bytes: int = setting(
        "COLLECTOR_MAX_PENDING_BYTES", str(32 * MiB), whole(64 * 1024, 8 * 1024**3), "the same, in bytes")
    kafka_acks: str = setting("COLLECTOR_KAFKA_ACKS", "all", one_of("all", "1"), "Kafka's acks")
    # Events wait in the log up to the send interval plus the linger before they are sent: the
    # sender hands them over in bursts, so kafka-python need not linger long itself.
    send_interval_ms: int = setting(
        "COLLECTOR_SEND_INTERVAL_MS", "50", whole(1, 1000), "how often the sender reads the log and hands it to Kafka")
    kafka_linger_ms: int = setting(
        "COLLECTOR_KAFKA_LINGER_MS", "5", whole(0, 1000), "how long the producer gathers a batch")
    # Under the producer's 1 MB request limit; grown as records come, not allocated ahead.
    kafka_batch_bytes: int = setting(
        "COLLECTOR_KAFKA_BATCH_BYTES", "262144", whole(1024, 1_000_000), "the most one partition's batch holds")
    kafka_compression: str = setting(
        "COLLECTOR_KAFKA_COMPRESSION", "none", one_of("none", "gzip", "snappy", "lz4", "zstd"), "the batches' codec")
    kafka_max_block_ms: int = setting(
        "COLLECTOR_KAFKA_MAX_BLOCK_MS", "1000", whole(10, 60_000), "how long a topic's metadata may take")
    kafka_delivery_timeout_ms: int = setting(
        "COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS", "30000", whole(3000, 600_000),
        "how long an acknowledgement may take before the topic counts as failing")
    dead_letter_after_ms: int = setting(
        "COLLECTOR_DEAD_LETTER_AFTER_MS", "300000", whole(1000, 7 * 86_400_000),
        "a topic failing this long while others are delivered goes to the dead letters")
    # A quarter of the log's default: a topic refused for good fills it, not the disk; past it
    # the events stay in the log (deadletter.py), and the alert CollectorDeadLettersFull speaks.
    dead_letter_max_bytes: int = setting(
        "COLLECTOR_DEAD_LETTER_MAX_BYTES", str(256 * MiB), whole(MiB, 2**50),
        "the most the dead letters may hold (their events stay in the log above)")
    # gunicorn's graceful_timeout is this plus 5 s (gunicorn.conf.py), so no flush is cut short.
    shutdown_flush_ms: int = setting(
        "COLLECTOR_SHUTDOWN_FLUSH_MS", "5000", whole(0, 60_000), "how long an exiting worker goes on delivering")
    spool_dir: str = setting("COLLECTOR_SPOOL_DIR", "spool", text, "the write-ahead log's directory")
    spool_max_bytes: int = setting(
        "COLLECTOR_SPOOL_MAX_BYTES", str(1024 * MiB), whole(MiB, 2**50), "the most the log may hold (503 above)")
    spool_segment_bytes: int = setting(
        "COLLECTOR_SPOOL_SEGMENT_BYTES", str(16 * MiB), whole(MiB, 1024 * MiB), "size at which a segment rolls")
    spool_fsync_ms: int = setting(
        "COLLECTOR_SPOOL_FSYNC_MS", "1000", whole(0, 60_000), "how often the log is synced; 0: before every answer")
    spool_replay_ms: int = setting(
        "COLLECTOR_SPOOL_REPLAY_MS", "1000", whole(50, 600_000), "how often a worker adopts the segments of gone ones")
    # A process of its own was faster than a thread in one worker, and that faster than one per
    # worker, in every setup measured (docs/benchmarks.md).
    sender: str = setting("COLLECTOR_SENDER", "process", one_of("process", "host", "worker"),
                          "a sender process per host, a sender thread per host, or one per worker")
    proxy_hops: int = setting(
        "COLLECTOR_PROXY_HOPS", "0", whole(0, 5), "proxies in front trusted for X-Forwarded-For")
    ready_max_age_ms: int = setting(
        "COLLECTOR_READY_MAX_AGE_MS", "10000", whole(1000, 600_000), "/readyz is 503 when Kafka is silent this long")
    rejects_topic: str = setting(
        "COLLECTOR_REJECTS_TOPIC", "collector.rejects", topic_name, "the one topic of refused events")
    rejects_per_second: int = setting(
        "COLLECTOR_REJECTS_PER_SECOND", "100", whole(0, 100_000), "refused events published a second, in all; 0: none")
    rejects_per_account: int = setting(
        "COLLECTOR_REJECTS_PER_ACCOUNT", "10", whole(1, 100_000), "refused events published a second, per account")
    rejects_excerpt_bytes: int = setting(
        "COLLECTOR_REJECTS_EXCERPT_BYTES", "1024", whole(0, 65_536), "bytes of a refused body kept; 0: none")
    debug_token: str | None = setting(
        "COLLECTOR_DEBUG_TOKEN", "", token, "the live debugger's token; unset: the debugger is off")
    docs: bool = setting("COLLECTOR_DOCS", "true", flag, "whether /docs serves the API reference")
    log_format: str = setting("COLLECTOR_LOG_FORMAT", "text", one_of("text", "json"), "the log lines' format")
    bind: tuple[str, ...] = setting("COLLECTOR_BIND", "127.0.0.1:8000", listen, "gunicorn's listen address")
    workers: int = setting("WEB_CONCURRENCY", "2", whole(1, 64), "gunicorn's worker processes")

    def __post_init__(self) -> None:
        prefix, _, suffix = self.topic_template.partition("{aid}")
        name = self.rejects_topic
        middle = name[len(prefix):len(name) - len(suffix)]
        if name.startswith(prefix) and name.endswith(suffix) and ID.fullmatch(middle):
            raise ConfigError(f"COLLECTOR_REJECTS_TOPIC must not be an account's topic (COLLECTOR_TOPIC_TEMPLATE is "
                              f"{self.topic_template}), got {name!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from ``env`` (default: the process environment); raises ``ConfigError``."""
        env = os.environ if env is None else env
        values = {}
        for field in dataclasses.fields(cls):
            meta = field.metadata
            values[field.name] = meta["parse"](meta["variable"], env.get(meta["variable"], meta["default"]))
        return cls(**values)


def declarations() -> list[tuple[str, str, str]]:
    """Every setting's variable, default and meaning, in declaration order."""
    return [(f.metadata["variable"], f.metadata["default"], f.metadata["meaning"])
            for f in dataclasses.fields(Settings)]


EXTENSION = "collector.settings"


def init_app(app: Flask, settings: Settings) -> None:
    """Give ``app`` its settings."""
    app.extensions[EXTENSION] = settings


def get_settings(app: Flask | None = None) -> Settings:
    """The settings of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
