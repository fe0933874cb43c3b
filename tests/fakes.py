"""Test doubles of kafka-python's clients: small classes with the interface the collector uses."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any, NamedTuple

from kafka.errors import IllegalStateError, KafkaTimeoutError
from kafka.future import Future

from app.config import Settings
from app.kafka_client import Clients, producer_configs


class FakeKafkaProducer:
    """kafka-python's producer interface, recording what it is sent.

    ``mode``: "ok" acknowledges at once, "fail" fails each delivery with ``error``, "hold"
    never answers (a stalled broker); ``raise_on_send`` makes ``send`` itself raise;
    ``refuse`` maps a topic to the error its deliveries fail with, whatever the mode.
    """

    def __init__(self, **configs: Any) -> None:
        self.configs = configs
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.mode = "ok"
        self.error: Exception = KafkaTimeoutError("Batch expired")
        self.raise_on_send: Exception | None = None
        self.held: list[tuple[Future, tuple[str, bytes, bytes]]] = []
        self.refuse: dict[str, Exception] = {}
        self.closed = False

    @property
    def _metadata(self) -> FakeMetadata:
        return FakeMetadata()

    @property
    def _sender(self) -> FakeMetadata:
        return FakeMetadata()

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        if self.closed:
            raise IllegalStateError("KafkaProducer already closed!")
        if self.raise_on_send is not None:
            raise self.raise_on_send
        future = Future()
        if topic in self.refuse:
            return future.failure(self.refuse[topic])
        if self.mode == "fail":
            return future.failure(self.error)
        if self.mode == "hold":
            self.held.append((future, (topic, key, value)))  # type: ignore[arg-type]
            return future
        self.sent.append((topic, key, value))  # type: ignore[arg-type]
        return future.success(None)

    def release(self) -> None:
        """The stalled broker answers: acknowledge what it held, from now on at once."""
        self.mode = "ok"
        held, self.held = self.held, []
        for future, record in held:
            self.sent.append(record)
            future.success(None)

    def fail_held(self) -> None:
        """The stalled broker fails what it held, in order, and from now on fails at once."""
        self.mode = "fail"
        held, self.held = self.held, []
        for future, _ in held:
            future.failure(self.error)

    def flush(self, timeout: float | None = None) -> None:
        if self.held:
            raise KafkaTimeoutError("flush timed out")

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeMetadata:
    """kafka-python's cluster metadata (and the sender's part in it), as the collector uses them:
    every topic has a partition, but those in ``FakeKafkaAdmin.missing`` until they are created."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        missing = topic in FakeKafkaAdmin.missing or FakeKafkaAdmin.only_created and topic not in FakeKafkaAdmin.topics
        return None if missing else {0}

    def add_topic(self, topic: str) -> None:
        pass

    def request_update(self) -> None:
        pass

    def wakeup(self) -> None:
        pass


class FakeKafkaAdmin:
    """kafka-python's admin client, as far as the collector uses it: topics it was asked to create.

    The cluster is the class's: every admin client, and every ``FakeMetadata``, sees one."""

    topics: dict[str, tuple[int, int]] = {}  # name -> (partitions, replication) of those created
    missing: set[str] = set()  # topics the cluster does not have (the producer's metadata lacks them)
    only_created = False  # True: the cluster has only the topics created through this admin

    def __init__(self, **configs: Any) -> None:
        self.configs = configs

    @classmethod
    def reset(cls) -> None:
        """An empty cluster that has every topic (as a broker that auto-creates them would seem)."""
        cls.topics, cls.missing, cls.only_created = {}, set(), False

    def create_topics(self, new_topics: list[Any], raise_errors: bool = True) -> dict[str, Any]:
        answers = []
        for t in new_topics:
            exists = t.name in self.topics
            self.topics.setdefault(t.name, (t.num_partitions, t.replication_factor))
            self.missing.discard(t.name)
            answers.append({"name": t.name, "error_code": 36 if exists else 0, "error_message": None})
        return {"topics": answers}

    def describe_cluster(self) -> dict[str, Any]:
        return {"cluster_id": "fake", "brokers": [{"node_id": 1, "host": "127.0.0.1", "port": 9092}]}

    def close(self) -> None:
        pass


class FakeRecord(NamedTuple):
    """A record as kafka-python's consumer gives it, the fields the debugger reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class FakeKafkaConsumer:
    """kafka-python's consumer, as the live debugger reads with it: the cluster is the class's.

    ``topics``: topic -> partition -> its (timestamp, key, value) records; ``end_short``: how many
    records short of the true end its end offsets are (as the embedded broker's were);
    ``stalled``: topics whose offsets and fetches wait until ``thaw`` is set (a broker that stopped
    answering after their metadata).
    A poll gives at most 3 records a partition, so that reading takes several."""

    topics: dict[str, dict[int, list[tuple[int, bytes | None, bytes | None]]]] = {}
    end_short = 0
    stalled: set[str] = set()
    thaw = threading.Event()
    made: list[FakeKafkaConsumer] = []

    @classmethod
    def reset(cls) -> None:
        cls.thaw.set()  # a reader left waiting from a test before goes
        cls.topics, cls.end_short, cls.stalled, cls.thaw, cls.made = {}, 0, set(), threading.Event(), []

    def __init__(self, **configs: Any) -> None:
        self.configs = configs
        self.positions: dict[Any, int] = {}
        self.highwaters: dict[Any, int] = {}
        self.closed = False
        self.made.append(self)

    def _call(self, topics: set[str]) -> None:
        if topics & self.stalled:
            self.thaw.wait()

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.topics[topic]) if topic in self.topics else None

    def end_offsets(self, tps: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        self._call({tp.topic for tp in tps})
        return {tp: max(0, len(self.topics[tp.topic][tp.partition]) - self.end_short) for tp in tps}

    def beginning_offsets(self, tps: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        return {tp: 0 for tp in tps}

    def assign(self, tps: list[Any]) -> None:
        self.positions = {tp: 0 for tp in tps}

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: Any, timeout_ms: int | None = None) -> int:
        return self.positions[tp]

    def highwater(self, tp: Any) -> int | None:
        return self.highwaters.get(tp)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[FakeRecord]]:
        self._call({tp.topic for tp in self.positions})
        batch = {}
        for tp, position in self.positions.items():
            held = self.topics[tp.topic][tp.partition]
            self.highwaters[tp] = len(held)
            end = min(position + 3, len(held))
            records = [FakeRecord(tp.topic, tp.partition, n, *held[n]) for n in range(position, end)]
            if records:
                batch[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return batch

    def close(self, timeout_ms: int | None = None) -> None:
        self.closed = True


FAKE_KAFKA = Clients(FakeKafkaProducer, FakeKafkaAdmin, FakeKafkaConsumer)


class SilentBroker:
    """A Kafka that takes connections and never answers, as a hung broker (or one stopped with
    SIGSTOP) looks: it listens, and the kernel completes each connection, but nothing reads.
    ``full``: its queue of connections not yet accepted is full, as a hung broker's soon is:
    a connection never completes."""

    def __init__(self, full: bool = False) -> None:
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen(0 if full else 1024)
        self.servers = f"127.0.0.1:{self.listening.getsockname()[1]}"
        self.queued = [socket.socket() for _ in range(4 if full else 0)]
        for queued in self.queued:
            queued.setblocking(False)
            queued.connect_ex(self.listening.getsockname())

    def configs(self) -> dict[str, Any]:
        """The collector's Kafka settings against this broker, 100 ms to bootstrap."""
        return producer_configs(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": self.servers,
                                                   "COLLECTOR_KAFKA_MAX_BLOCK_MS": "100"}))

    def __enter__(self) -> SilentBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in (self.listening, *self.queued):
            sock.close()


def kafka_resources() -> tuple[int, int]:
    """What this process's Kafka clients hold: its sockets and epoll instances, and its threads."""
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor, gone once listed
            held += os.readlink(f"/proc/self/fd/{fd}").startswith(("socket:", "anon_inode:[eventpoll]"))
    return held, threading.active_count()


def left_open(before: tuple[int, int], timeout: float = 5.0) -> tuple[int, int]:
    """How many more sockets and epolls, and threads, than ``before`` the process holds, once
    clients closed in the background are done (polled up to ``timeout``): (0, 0) when nothing leaked."""
    deadline = time.monotonic() + timeout
    while True:
        now = kafka_resources()
        extra = (max(0, now[0] - before[0]), max(0, now[1] - before[1]))
        if extra == (0, 0) or time.monotonic() > deadline:
            return extra
        time.sleep(0.02)
