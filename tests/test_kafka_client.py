"""kafka-python as the collector sets it up (app/kafka_client.py): its settings, and what an
error means."""
from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.kafka_client import NEVER_MS, producer_configs


def test_the_producer_settings_keep_order_and_never_expire_records():
    configs = producer_configs(Settings.from_env({}))
    assert configs["max_in_flight_requests_per_connection"] == 1
    assert configs["enable_idempotence"] is False
    assert configs["delivery_timeout_ms"] == NEVER_MS
    assert configs["batch_size"] == 256 * 1024
    assert producer_configs(Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "65536"}))["batch_size"] == 65536
    with pytest.raises(ConfigError, match="COLLECTOR_KAFKA_BATCH_BYTES must be between 1024 and 1000000"):
        Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "2000000"})
