"""kafka-python as the collector sets it up (app/kafka_client.py): its settings, and what an
error means."""
from __future__ import annotations

import gc
import logging
import socket

import pytest
from kafka.errors import (
    IllegalStateError,
    InvalidRecordError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
    UnknownError,
    UnknownTopicOrPartitionError,
)
from kafka.partitioner import DefaultPartitioner

from app.config import ConfigError, Settings
from app.kafka_client import (
    NEVER_MS,
    KeyPartitioner,
    close_now,
    create_topics,
    forget_topics,
    known_partitions,
    new_admin,
    new_consumer,
    new_producer,
    producer_broken,
    producer_configs,
    refused,
    went_away,
    with_metadata,
)
from dev.broker import free_port
from tests.fakes import FakeKafkaConsumer, SilentBroker, kafka_resources, left_open
from tests.helpers import wait_until


def test_the_producer_settings_keep_order_and_never_expire_records():
    configs = producer_configs(Settings.from_env({}))
    assert configs["max_in_flight_requests_per_connection"] == 1
    assert configs["enable_idempotence"] is False
    assert configs["delivery_timeout_ms"] == NEVER_MS
    assert configs["batch_size"] == 256 * 1024
    assert producer_configs(Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "65536"}))["batch_size"] == 65536
    with pytest.raises(ConfigError, match="COLLECTOR_KAFKA_BATCH_BYTES must be between 1024 and 1000000"):
        Settings.from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "2000000"})


@pytest.mark.parametrize(("error", "refused_for_good", "producer_broken_by_it"), [
    (InvalidRecordError(), True, False),
    (MessageSizeTooLargeError(), True, False),
    (TopicAuthorizationFailedError(), True, False),
    (KafkaTimeoutError(), False, False),  # retriable: send again
    (UnknownTopicOrPartitionError(), False, False),
    (UnknownError(), False, False),  # seen from a broker that had just restarted empty
    (IllegalStateError("KafkaProducer already closed!"), False, True),
    (RuntimeError("not Kafka's"), False, True),
])
def test_what_an_error_means(error, refused_for_good, producer_broken_by_it):
    assert (refused(error), producer_broken(error)) == (refused_for_good, producer_broken_by_it)


class Admin:
    """An admin client whose cluster answers each topic's creation with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.asked: list[tuple[str, int, int]] = []

    def create_topics(self, new_topics, raise_errors=True):
        self.asked += [(t.name, t.num_partitions, t.replication_factor) for t in new_topics]
        return {"topics": [{"name": t.name, "error_code": self.code, "error_message": "why"} for t in new_topics]}


@pytest.mark.parametrize(("code", "problem"), [(0, None), (36, None), (29, "error 29: why")])  # 36: it exists
def test_topics_are_created_in_one_request_and_each_answer_read(code, problem):
    admin = Admin(code)
    assert create_topics(admin, ["events.1", "events.2"], 3, 1) == {"events.1": problem, "events.2": problem}
    assert admin.asked == [("events.1", 3, 1), ("events.2", 3, 1)]


def test_kafka_went_away_only_when_every_server_refuses():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        up, down = f"127.0.0.1:{listening.getsockname()[1]}", f"127.0.0.1:{free_port()}"
        assert went_away([down])
        assert not went_away([down, up])
        assert not went_away([up])


@pytest.mark.parametrize("full", [False, True], ids=["connects", "never-connects"])
def test_an_admin_client_a_hung_kafka_never_answers_leaves_nothing_open(full, caplog):
    caplog.set_level(logging.CRITICAL, logger="kafka")  # pytest keeps log records, and they the errors
    with SilentBroker(full) as silent:
        configs = silent.configs()
        before = kafka_resources()
        gc.disable()  # what a collection would free is not left to chance
        try:
            for _ in range(10):
                with pytest.raises(KafkaTimeoutError, match="Unable to bootstrap"):
                    new_admin(**configs)
            sockets, threads = left_open(before, timeout=0)  # an admin client closes before it raises
        finally:
            gc.enable()
    # It was 3 descriptors and a thread each, and a socket each that never connected: only the
    # last attempt's is left, until the next one's collection.
    assert sockets <= (1 if full else 0) and threads == 0


def test_a_producer_told_to_forget_topics_asks_for_them_no_more():
    with SilentBroker() as silent:
        producer = new_producer(**silent.configs())
        try:
            topics = [f"events.{n}" for n in range(100)]
            assert with_metadata(producer, topics) == set()  # none known: all asked for, without waiting
            wait_until(lambda: producer._metadata._topics == set(topics), what="the topics tracked")
            forget_topics(producer, set(topics[:90]))
            wait_until(lambda: producer._metadata._topics == set(topics[90:]), what="90 forgotten")
            assert sorted(t.name for t in producer._metadata.metadata_request().topics) == topics[90:]
        finally:
            close_now(producer)


class Cluster:
    """kafka-python's cluster metadata, as a partitioner reads it."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.partitions)


@pytest.mark.parametrize(("key", "partition"), [
    # The Java client's choice among 1,000 partitions (org.apache.kafka.clients.producer's default
    # partitioner), as kafka-python's own test of its murmur2 records it.
    (b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742),
])
def test_a_key_goes_to_the_partition_a_java_client_chooses(key, partition):
    assert KeyPartitioner().partition("events.1", key, key, None, b"{}", Cluster(1000)) == partition


def test_a_key_goes_where_kafka_pythons_default_partitioner_sends_it_and_one_partition_needs_no_hash():
    ours, theirs = KeyPartitioner(), DefaultPartitioner()
    for n in range(2000):
        key = f"instance-{n}".encode() + bytes([n % 256]) * (n % 7)  # every length mod 4, bytes above 127
        for partitions in (1, 3, 12):
            cluster = Cluster(partitions)
            cluster.topics = lambda: {"t"}  # type: ignore[attr-defined]
            cluster.available_partitions_for_topic = cluster.partitions_for_topic  # type: ignore[attr-defined]
            assert ours.partition("t", key, key, None, b"", cluster) == theirs.partition("t", key, key, None, b"",
                                                                                            cluster)


def test_the_debuggers_consumer_never_asks_for_a_topic_to_be_created_nor_waits_to_be_made():
    """kafka-python 3.0.12 builds the consumer's metadata without allow_auto_create_topics too
    (integration/test_debug.py shows that no topic is created)."""
    before = kafka_resources()
    with SilentBroker() as broker:
        consumer = new_consumer(bootstrap_servers=broker.servers, api_version=(3, 9), group_id=None)
        try:
            assert consumer._cluster.config["allow_auto_create_topics"] is False
            assert consumer._cluster.metadata_request().allow_auto_topic_creation is False
            with pytest.raises(KafkaTimeoutError):
                known_partitions(consumer, ["events.1"], timeout_ms=100)
        finally:
            consumer.close()
    assert left_open(before) == (0, 0)


def test_known_partitions_are_those_of_the_topics_that_exist(fake_cluster):
    FakeKafkaConsumer.topics = {"events.1": {0: [], 1: []}, "empty": {}}
    assert known_partitions(FakeKafkaConsumer(), ["events.1", "events.2", "empty"], 100) == {"events.1": {0, 1}}
