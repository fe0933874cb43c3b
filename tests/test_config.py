"""The settings: each read from the environment once, a bad value refused with a message that
names it, and the README's table in agreement with the declarations."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, declarations

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("variable, raw, field, value", [
    ("KAFKA_BOOTSTRAP_SERVERS", " a:9092, b:9093 ", "kafka_bootstrap_servers", ("a:9092", "b:9093")),
    ("KAFKA_BOOTSTRAP_SERVERS", "[::1]:9092", "kafka_bootstrap_servers", ("[::1]:9092",)),
    ("COLLECTOR_TOPIC_TEMPLATE", "prod.events.{aid}", "topic_template", "prod.events.{aid}"),
    ("COLLECTOR_TOPIC_PARTITIONS", "-1", "topic_partitions", -1),
    ("COLLECTOR_TOPIC_PARTITIONS", "12", "topic_partitions", 12),
    ("COLLECTOR_REGISTRY", "", "registry", None),
    ("COLLECTOR_REGISTRY", " /etc/registry.toml ", "registry", "/etc/registry.toml"),
    ("COLLECTOR_MAX_BATCH", " 500 ", "max_batch", 500),
    ("COLLECTOR_CORS_ORIGINS", "*", "cors_origins", "*"),
    ("COLLECTOR_CORS_ORIGINS", "https://a.example/, http://b.example:8080", "cors_origins",
     ("https://a.example", "http://b.example:8080")),
    ("COLLECTOR_KAFKA_ACKS", "ALL", "kafka_acks", "all"),
    ("COLLECTOR_SPOOL_FSYNC_MS", "0", "spool_fsync_ms", 0),
    ("COLLECTOR_SENDER", "Worker", "sender", "worker"),
    ("COLLECTOR_LOG_FORMAT", "json", "log_format", "json"),
    ("COLLECTOR_BIND", "0.0.0.0:8000,unix:/run/collector.sock", "bind", ("0.0.0.0:8000", "unix:/run/collector.sock")),
    ("WEB_CONCURRENCY", "8", "workers", 8),
    ("COLLECTOR_REJECTS_TOPIC", "bad-rows", "rejects_topic", "bad-rows"),
    ("COLLECTOR_REJECTS_PER_SECOND", "0", "rejects_per_second", 0),
    ("COLLECTOR_REJECTS_EXCERPT_BYTES", "0", "rejects_excerpt_bytes", 0),
    ("COLLECTOR_DEBUG_TOKEN", "", "debug_token", None),
    ("COLLECTOR_DEBUG_TOKEN", "s3cret-s3cret-s3cret", "debug_token", "s3cret-s3cret-s3cret"),
])
def test_good_values(variable, raw, field, value):
    assert getattr(Settings.from_env({variable: raw}), field) == value


@pytest.mark.parametrize("variable, raw, message", [
    ("KAFKA_BOOTSTRAP_SERVERS", "", "KAFKA_BOOTSTRAP_SERVERS must not be empty"),
    ("KAFKA_BOOTSTRAP_SERVERS", "broker",
     "KAFKA_BOOTSTRAP_SERVERS must be a comma-separated host:port list, got 'broker'"),
    ("KAFKA_BOOTSTRAP_SERVERS", "a:9092,b:99999", "host:port list, got 'b:99999'"),
    ("COLLECTOR_TOPIC_TEMPLATE", "events", "COLLECTOR_TOPIC_TEMPLATE must contain {aid} exactly once, got 'events'"),
    ("COLLECTOR_TOPIC_TEMPLATE", "ev ents.{aid}", "must give a legal Kafka topic name"),
    ("COLLECTOR_TOPIC_PARTITIONS", "0", "COLLECTOR_TOPIC_PARTITIONS must be -1 (the broker's default) or a positive"),
    ("COLLECTOR_MAX_BATCH", "ten", "COLLECTOR_MAX_BATCH must be a whole number, got 'ten'"),
    ("COLLECTOR_MAX_BATCH", "0", "COLLECTOR_MAX_BATCH must be between 1 and 10000, got 0"),
    ("COLLECTOR_MAX_BODY_BYTES", "2000000", "COLLECTOR_MAX_BODY_BYTES must be between 1024 and 921600, got 2000000"),
    ("COLLECTOR_CORS_ORIGINS", "shop.example", "COLLECTOR_CORS_ORIGINS must be * or a comma-separated list of origins"),
    ("COLLECTOR_KAFKA_ACKS", "0", "COLLECTOR_KAFKA_ACKS must be one of all, 1, got '0'"),
    ("COLLECTOR_KAFKA_COMPRESSION", "brotli",
     "COLLECTOR_KAFKA_COMPRESSION must be one of none, gzip, snappy, lz4, zstd"),
    ("COLLECTOR_SHUTDOWN_FLUSH_MS", "120000", "COLLECTOR_SHUTDOWN_FLUSH_MS must be between 0 and 60000, got 120000"),
    ("COLLECTOR_SPOOL_DIR", "  ", "COLLECTOR_SPOOL_DIR must not be empty"),
    ("COLLECTOR_SENDER", "thread", "COLLECTOR_SENDER must be one of process, host, worker, got 'thread'"),
    ("COLLECTOR_LOG_FORMAT", "xml", "COLLECTOR_LOG_FORMAT must be one of text, json, got 'xml'"),
    ("COLLECTOR_BIND", "8000", "COLLECTOR_BIND must be a comma-separated host:port list, got '8000'"),
    ("COLLECTOR_BIND", "unix:", "COLLECTOR_BIND must name a socket's path after unix:"),
    ("WEB_CONCURRENCY", "many", "WEB_CONCURRENCY must be a whole number, got 'many'"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be between 1 and 64, got 0"),
    ("COLLECTOR_REJECTS_TOPIC", "events.{aid}", "COLLECTOR_REJECTS_TOPIC must be a legal Kafka topic name"),
    ("COLLECTOR_REJECTS_TOPIC", "events.007", "COLLECTOR_REJECTS_TOPIC must not be an account's topic"),
    ("COLLECTOR_REJECTS_TOPIC", "events.0e9f1c1a-1b2c-4d5e-8f90-123456789abc", "must not be an account's topic"),
    ("COLLECTOR_REJECTS_PER_ACCOUNT", "0", "COLLECTOR_REJECTS_PER_ACCOUNT must be between 1 and 100000, got 0"),
    ("COLLECTOR_DEBUG_TOKEN", "secret", "COLLECTOR_DEBUG_TOKEN must be 16 to 256 visible ASCII characters"),
])
def test_bad_values_are_refused_by_name(variable, raw, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({variable: raw})
    assert message in str(refused.value)


def test_every_default_is_a_good_value_and_the_settings_are_frozen():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == ("127.0.0.1:9092",) and settings.sender == "process"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_batch = 1  # type: ignore[misc]


def test_each_setting_is_declared_once_with_a_meaning():
    variables = [variable for variable, _, _ in declarations()]
    assert len(variables) == len(set(variables)) == len(dataclasses.fields(Settings))
    assert all(meaning.strip() and "\n" not in meaning for _, _, meaning in declarations())


def readme_settings() -> dict[str, str]:
    """The README's configuration table: variable -> its default cell."""
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^\| `([A-Z_]+)` \|.*\| ([^|]+) \|$", section, re.M)}


def test_the_readme_table_lists_every_setting_with_its_default():
    table = readme_settings()
    assert list(table) == [variable for variable, _, _ in declarations()], "same settings, same order"
    for variable, default, _ in declarations():
        cell = table[variable]
        shown = re.match(r"`([^`]*)`", cell)
        assert (shown[1] if shown else "unset" if cell.startswith("unset") else cell) == (default or "unset"), variable


@pytest.mark.parametrize("env, message", [
    ({"WEB_CONCURRENCY": "0"}, "cannot start: WEB_CONCURRENCY must be between 1 and 64, got 0"),
    ({"COLLECTOR_BIND": "localhost"}, "cannot start: COLLECTOR_BIND must be a comma-separated host:port list"),
    ({"COLLECTOR_LOG_FORMAT": "xml"}, "cannot start: COLLECTOR_LOG_FORMAT must be one of text, json"),
    ({"COLLECTOR_MAX_BATCH": "0"}, "cannot start: COLLECTOR_MAX_BATCH must be between 1 and 10000"),
])
def test_gunicorn_stops_on_a_bad_setting_with_its_name(env, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py", "wsgi:app"],
                         cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), **env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert message in out.stderr


def test_gunicorn_takes_bind_and_workers_from_the_settings(tmp_path):
    out = subprocess.run([sys.executable, "-m", "gunicorn", "--print-config", "-c", "gunicorn.conf.py", "wsgi:app"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "WEB_CONCURRENCY": "3",
                              "COLLECTOR_BIND": "127.0.0.1:8123", "COLLECTOR_SHUTDOWN_FLUSH_MS": "12500"})
    assert out.returncode == 0, out.stderr
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", out.stdout, re.M))
    assert config["bind"] == "['127.0.0.1:8123']"
    assert config["workers"] == "3"
    assert config["graceful_timeout"] == "18"  # 12.5 s rounded up, and 5 s more
