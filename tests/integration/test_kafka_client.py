"""kafka-python against the real broker, as the collector sets it up."""
from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from app.config import Settings
from app.kafka_client import close_now, new_producer, producer_configs

pytestmark = pytest.mark.integration


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
