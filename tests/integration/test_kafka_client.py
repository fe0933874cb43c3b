"""kafka-python against the real broker, as the collector sets it up."""
from __future__ import annotations

import contextlib
import os
import time

import pytest
from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from app.config import Settings
from app.kafka_client import close_now, forget_topics, new_producer, producer_configs
from dev.broker import Broker
from dev.events import read_records
from tests.helpers import FAST, Collector, account_id, keys_in, new_account, wait_until

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


def kafka_held(pid: int) -> tuple[int, int]:
    """What a process's Kafka clients hold: its sockets and epoll instances, and its threads."""
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    clients = sum(link.startswith(("socket:", "anon_inode:[eventpoll]")) for link in links)
    return clients, len(os.listdir(f"/proc/{pid}/task"))


def test_a_hung_broker_leaves_no_descriptor_or_thread_behind_in_the_workers(tmp_path):
    """Kafka takes connections and never answers (the broker stopped with SIGSTOP) for 20 s while
    events come: the clients that time out meanwhile (the probe's, the topic checks') are closed."""
    env = {**FAST, "COLLECTOR_READY_MAX_AGE_MS": "1000"}  # a probe every 0.25 s
    with Broker() as broker:
        collector = Collector(broker.servers, tmp_path, env=env).start()
        try:
            aid = new_account(broker)
            collector.post_many(aid, [f"before-{i}" for i in range(20)])
            keys_in(broker, f"events.{aid}", {f"before-{i}" for i in range(20)})
            pids = collector.worker_pids()
            before = {pid: kafka_held(pid) for pid in pids}
            most = dict(before)
            broker.pause()
            for second in range(20):  # sampled once a second over the outage
                collector.post_many(aid, [f"hung-{second}"])  # it waits: its topic is checked again and again
                most = {pid: tuple(map(max, most[pid], kafka_held(pid))) for pid in pids}
                time.sleep(1)
            broker.resume()
        finally:
            collector.stop()
    print(f"\nsockets and epolls, threads per worker: before {before}, at most while hung {most}")
    assert all(most[pid][0] <= before[pid][0] + 12 and most[pid][1] <= before[pid][1] + 4 for pid in pids), most


def test_a_producer_forgets_the_topics_it_is_told_to_and_takes_them_again(broker):
    producer = new_producer(**producer_configs(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": broker.servers})))
    topics = [f"forget.{account_id()}" for _ in range(30)]
    for topic in topics:
        broker.create_topic(topic, partitions=1)
    try:
        for topic in topics:
            producer.send(topic, key=b"k", value=b'{"n": 1}').get(timeout=10)

        def held() -> tuple[set[str], set[str], set[str]]:
            metadata, batches = producer._metadata, producer._accumulator._batches
            return metadata._topics, {p.topic for p in batches}, {t for t in topics if metadata.partitions_for_topic(t)}

        assert held() == (set(topics), set(topics), set(topics))
        forget_topics(producer, set(topics[:20]))
        wait_until(lambda: held() == (set(topics[20:]),) * 3, what="20 topics forgotten")
        producer.send(topics[0], key=b"k", value=b'{"n": 2}').get(timeout=10)  # asked for anew
        assert held() == ({topics[0], *topics[20:]},) * 3
    finally:
        close_now(producer)
    assert [r.value for r in read_records(broker.servers, topics[0], count=2)] == [b'{"n": 1}', b'{"n": 2}']
