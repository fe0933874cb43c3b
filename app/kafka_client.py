"""kafka-python, as the collector uses it: the producer, the admin client, what an error means.

The one module that imports ``kafka``; ``TopicPartition`` is passed on from here.
"""
from __future__ import annotations

import contextlib
import gc
import os
import random
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: F401 - for readback.py
from kafka.admin import NewTopic
from kafka.errors import IllegalStateError, KafkaError, KafkaTimeoutError, UnknownError
from kafka.net.compat import KafkaNetClient
from kafka.partitioner import Partitioner
from murmurhash2 import murmurhash2

if TYPE_CHECKING:
    from .config import Settings

# Records never expire inside kafka-python: a batch that expired there while a later one of
# its partition was then delivered would reach Kafka out of order. The sender decides what
# waited too long instead (COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS, COLLECTOR_DEAD_LETTER_AFTER_MS).
NEVER_MS = 7 * 24 * 3600 * 1000
JAVA_SEED = 0x9747B28C  # the seed of org.apache.kafka.common.utils.Utils.murmur2


def producer_configs(settings: Settings) -> dict[str, Any]:
    """kafka-python's producer settings from the collector's."""
    return {
        "bootstrap_servers": list(settings.kafka_bootstrap_servers),
        "client_id": f"collector-{os.getpid()}",
        # A ceiling, negotiated down per connection; set so creating the producer never
        # blocks on a bootstrap (it would for 30 s with the broker down).
        "api_version": (3, 9),
        "acks": "all" if settings.kafka_acks == "all" else 1,
        # An idempotent producer was seen to wedge for good after a long outage; without it,
        # one request in flight per connection is what keeps a partition's order on retries.
        "enable_idempotence": False,
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": settings.kafka_linger_ms,
        "batch_size": settings.kafka_batch_bytes,
        "compression_type": None if settings.kafka_compression == "none" else settings.kafka_compression,
        "max_block_ms": settings.kafka_max_block_ms,
        "delivery_timeout_ms": NEVER_MS,
        "request_timeout_ms": min(settings.kafka_delivery_timeout_ms // 2, 30_000),
        "reconnect_backoff_max_ms": 1000,
        # The producer's own metrics: 5 per topic it ever sent to, never dropped (the collector has its own).
        "metrics_enabled": False,
        "partitioner": KeyPartitioner(),
    }


class KeyPartitioner(Partitioner):
    """The partition a Java client's default partitioner chooses for a key (murmur2 of it, modulo
    the partitions), so that each instance_id stays on its partition: kafka-python's own, minus
    its cost on the sender's path. Its murmur2 in Python took 2.6 of the sender process's 19 µs
    per record; this one is in C (the murmurhash2 package, with the Java client's seed), and a
    topic of one partition needs none."""

    def partition(self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
                  serialized_value: bytes | None, cluster: Any) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic} not found in the cluster's metadata")
        if len(partitions) == 1:
            return next(iter(partitions))  # type: ignore[no-any-return]
        if serialized_key is None:  # the collector always keys its records: kafka-python's way otherwise
            return random.choice(sorted(partitions))
        return sorted(partitions)[(murmurhash2(serialized_key, JAVA_SEED) & 0x7FFFFFFF) % len(partitions)]


def new_producer(**configs: Any) -> Any:
    """A kafka-python producer that never asks the broker to create a topic."""
    producer = KafkaProducer(**configs)
    # kafka-python 3.0.12 ignores allow_auto_create_topics=False: its cluster metadata is built
    # without it, and every metadata request would let the broker create a missing topic with
    # its own defaults. Private, hence the pinned version and tests/test_kafka_client.py.
    producer._metadata.config["allow_auto_create_topics"] = False
    return producer


def new_admin(**configs: Any) -> Any:
    """A kafka-python admin client on the producer's settings; nothing of it stays open when
    Kafka does not answer its bootstrap within ``max_block_ms`` (it raises then)."""
    made: list[KafkaNetClient] = []

    def network_client(**kwargs: Any) -> KafkaNetClient:
        made.append(KafkaNetClient(**kwargs))
        return made[-1]

    try:
        return KafkaAdminClient(
            bootstrap_servers=configs["bootstrap_servers"], client_id=configs["client_id"],
            api_version=configs["api_version"], bootstrap_timeout_ms=configs["max_block_ms"],
            request_timeout_ms=configs["request_timeout_ms"], reconnect_backoff_max_ms=1000,
            kafka_client=network_client,
        )
    except BaseException:
        # kafka-python 3.0.12 starts the client's I/O thread (its epoll, its wake-up sockets)
        # before the bootstrap that raises, and nothing stops it: against a hung broker, each
        # probe and topic check left a thread and three descriptors behind.
        for client in made:
            with contextlib.suppress(Exception):  # what raised above is what the caller must see
                client.close()
        # A connection attempt that timed out leaves its socket in a reference cycle (through
        # the exception's traceback) until a collection: against a broker whose backlog is full,
        # 27 such sockets sat in SYN-SENT after 150 s, the producer's own attempts among them.
        gc.collect()
        raise


def new_consumer(**configs: Any) -> Any:
    """A kafka-python consumer (the live debugger's) that never asks the broker to create a topic."""
    consumer = KafkaConsumer(**configs)
    # As in new_producer: 3.0.12 builds its cluster metadata without allow_auto_create_topics.
    consumer._cluster.config["allow_auto_create_topics"] = False
    return consumer


def known_partitions(consumer: Any, topics: list[str], timeout_ms: int) -> dict[str, set[int]]:
    """The partitions of those of ``topics`` that exist, asked in one metadata request that
    creates none and waits at most ``timeout_ms`` (KafkaTimeoutError then); kafka-python's own
    partitions_for_topic has no timeout. (Private API, hence the pinned version; a fake consumer
    has no ``_cluster`` and answers partitions_for_topic itself.)"""
    cluster = getattr(consumer, "_cluster", None)
    if cluster is not None:
        cluster.set_topics(topics)
        consumer._net.run(consumer._manager.wait_for, cluster.request_update(), timeout_ms)
    answers = {topic: (cluster or consumer).partitions_for_topic(topic) for topic in topics}
    return {topic: set(partitions) for topic, partitions in answers.items() if partitions}


class Clients(NamedTuple):
    """How the collector makes its Kafka clients: the seam where tests put fakes."""

    producer: Callable[..., Any]  # (**producer_configs) -> a KafkaProducer
    admin: Callable[..., Any]  # (**producer_configs) -> a KafkaAdminClient
    consumer: Callable[..., Any] = new_consumer  # (**readback.consumer_configs) -> a KafkaConsumer


KAFKA = Clients(new_producer, new_admin, new_consumer)


def create_topics(admin: Any, topics: list[str], partitions: int, replication: int) -> dict[str, str | None]:
    """Create ``topics`` in one request: per topic, None when it exists now (made or already
    there), else why not. Raises when the request itself fails."""
    result = admin.create_topics([NewTopic(t, partitions, replication) for t in topics], raise_errors=False)
    return {a["name"]: None if a["error_code"] in (0, 36) else f"error {a['error_code']}: {a['error_message']}"
            for a in result["topics"]}  # 36: the topic exists already


def with_metadata(producer: Any, topics: list[str]) -> set[str]:
    """Those of ``topics`` whose partitions the producer knows; it is asked for the others, all in
    one request, without waiting. A send to a topic the producer knows nothing of would wait for
    a metadata request of its own: spread over 1,000 topics, that was most of a worker's time.
    (Private API, hence the pinned version; a fake producer has no ``_metadata``.)"""
    metadata = getattr(producer, "_metadata", None)
    if metadata is None:
        return set(topics)
    known = {t for t in topics if metadata.partitions_for_topic(t) is not None}
    if len(known) < len(topics):
        for topic in topics:
            if topic not in known:
                producer._sender.add_topic(topic)
        metadata.request_update()
        producer._sender.wakeup()
    return known


def forget_topics(producer: Any, topics: set[str]) -> None:
    """Let the producer forget ``topics`` (a send to one asks for it anew); a fake keeps nothing."""
    # kafka-python 3.0.12 drops no topic: each metadata request lists every topic it tracks, and
    # each loop of its I/O thread goes over every partition it ever queued for. Private API, hence
    # the pinned version; done on that I/O thread, which reads both, so neither changes under it.
    if not topics or not isinstance(producer, KafkaProducer):
        return
    metadata, accumulator = producer._metadata, producer._accumulator

    def forget() -> None:
        metadata._topics -= topics
        metadata.request_update()  # a refresh drops their partitions: a send to one then asks for it
        for partition in [p for p in accumulator._batches if p.topic in topics]:
            with accumulator._tp_lock(partition):  # send() appends under it, from the sender thread
                if not accumulator._batches[partition] and partition not in accumulator.muted:  # none in flight
                    del accumulator._batches[partition]

    with contextlib.suppress(RuntimeError):  # closed: it is being replaced
        producer._sender._client._net.call_soon_threadsafe(forget)


def close_now(producer: Any) -> None:
    """Close a producer at once: what it still holds is abandoned (the log keeps it)."""
    try:
        producer.close(timeout=0)
    except KafkaTimeoutError:  # close() flushes first and gives up before closing
        producer._sender.force_close()  # private: the only way to drop pending records
    except Exception:  # noqa: BLE001 - a producer that failed to close is dropped all the same
        pass


def went_away(servers: list[str]) -> bool:
    """Whether Kafka is gone, not just slow or busy: every bootstrap server refuses a connection.
    A broker that comes back may be a new one, without the topics."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=0.5).close()
        except ConnectionRefusedError:
            continue
        except OSError:  # a timeout, no route: not known to be gone
            return False
        return False
    return True


def refused(exc: BaseException) -> bool:
    """Whether Kafka refused the record for good (invalid, too large, not authorized): sending it
    again will not help. An unknown server error is not taken as final: it was seen from a
    broker that had just restarted empty."""
    return isinstance(exc, KafkaError) and not exc.retriable and not isinstance(exc, (UnknownError, IllegalStateError))


def producer_broken(exc: BaseException) -> bool:
    """Whether ``send`` failed because the producer itself is unusable (closed, fatal state)."""
    return isinstance(exc, IllegalStateError) or not isinstance(exc, KafkaError)
