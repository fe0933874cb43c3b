"""kafka-python as the collector sets it up: its settings, and no topic created behind its back."""
from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from app.config import ConfigError, Settings
from app.kafka_client import NEVER_MS, close_now, new_producer, producer_configs


def test_the_producer_settings_keep_order_and_never_expire_records():
    configs = producer_configs(Settings.from_env({}))
    assert configs["max_in_flight_requests_per_connection"] == 1
    assert configs["enable_idempotence"] is False
    assert configs["delivery_timeout_ms"] == NEVER_MS
    assert configs["batch_size"] == 256 * 1024
    assert producer_configs(Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "65536"}))["batch_size"] == 65536
    with pytest.raises(ConfigError, match="COLLECTOR_KAFKA_BATCH_BYTES must be between 1024 and 1000000"):
        Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "2000000"})


@pytest.mark.integration
def test_the_producer_never_makes_the_broker_create_a_topic(broker):
    """kafka-python 3.0.12 ignores allow_auto_create_topics=False; new_producer sets it where it counts."""
    configs = {**producer_configs(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": broker.servers,
                                            "COLLECTOR_KAFKA_MAX_BLOCK_MS": "1500"}))}
    producer = new_producer(**configs)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send("events.never-created", key=b"k", value=b"{}")
    finally:
        close_now(producer)
    consumer = KafkaConsumer(bootstrap_servers=broker.servers, api_version=(3, 9))
    try:
        assert "events.never-created" not in consumer.topics()
    finally:
        consumer.close()
