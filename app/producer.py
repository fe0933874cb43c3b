"""The Kafka producer as a Flask extension: one per worker process, fed through a bounded queue.

A request never talks to the broker: it appends the serialized record to this process's
outbox and returns. A sender thread hands records to kafka-python, whose own I/O thread
delivers them. The outbox counts every event from ``put`` until Kafka acknowledges it,
and refuses new ones (``Unavailable``, a 503) above the configured count or bytes.
This is the one module that imports ``kafka``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson
from flask import Flask, current_app

log = logging.getLogger(__name__)
EXTENSION = "collector.producer"


class Unavailable(Exception):
    """The collector cannot keep this event now: the caller should retry later (503)."""


class Record(NamedTuple):
    """One Kafka record, as it will be sent."""

    event_id: str
    topic: str
    key: bytes
    value: bytes


def kafka_producer(**configs: Any) -> Any:
    """Create a kafka-python producer (the default factory; tests pass a fake one)."""
    from kafka import KafkaProducer

    return KafkaProducer(**configs)


def producer_configs(config: Mapping[str, Any]) -> dict[str, Any]:
    """kafka-python settings from the app's config."""
    return {
        "bootstrap_servers": config["KAFKA_BOOTSTRAP_SERVERS"],
        "client_id": f"collector-{os.getpid()}",
        # A ceiling, negotiated down per connection; set so creating the producer never
        # blocks on a bootstrap (it would for 30 s with the broker down).
        "api_version": (3, 9),
        "acks": "all" if config["COLLECTOR_KAFKA_ACKS"] == "all" else 1,
        # An idempotent producer was seen to wedge for good after a long outage.
        "enable_idempotence": False,
        "linger_ms": config["COLLECTOR_KAFKA_LINGER_MS"],
        "compression_type": None
        if config["COLLECTOR_KAFKA_COMPRESSION"] == "none"
        else config["COLLECTOR_KAFKA_COMPRESSION"],
        "max_block_ms": config["COLLECTOR_KAFKA_MAX_BLOCK_MS"],
        "delivery_timeout_ms": config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"],
        "request_timeout_ms": min(config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"] // 2, 30_000),
        "reconnect_backoff_max_ms": 1000,
    }


class Outbox:
    """This process's bounded queue of events on their way to Kafka."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.template: str = config["COLLECTOR_TOPIC_TEMPLATE"]
        self.max_pending: int = config["COLLECTOR_MAX_PENDING"]
        self.max_pending_bytes: int = config["COLLECTOR_MAX_PENDING_BYTES"]
        self.flush_ms: int = config["COLLECTOR_SHUTDOWN_FLUSH_MS"]
        self.factory: Callable[..., Any] = config.get("COLLECTOR_KAFKA_FACTORY") or kafka_producer
        self.configs = producer_configs(config)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pid = 0
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Record] = deque()
        self._pending = 0
        self._pending_bytes = 0
        self._closing = False
        self._producer: Any = None
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Events accepted by this process and not yet acknowledged by Kafka."""
        return self._pending

    def start(self) -> None:
        """Create this process's producer and sender thread (after a fork: anew)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._reset()
            self._producer = self.factory(**self.configs)
            self._thread = threading.Thread(target=self._run, name="collector-sender", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def put(self, event: dict[str, Any]) -> None:
        """Queue one internal event for its account's topic; raises ``Unavailable``."""
        if self._pid != os.getpid():
            self.start()
        record = Record(
            event["event_id"],
            self.template.replace("{aid}", event["account_id"]),
            event["instance_id"].encode(),
            orjson.dumps(event),
        )
        size = len(record.value)
        with self._lock:
            if self._closing:
                raise Unavailable("the collector is shutting down")
            if self._pending >= self.max_pending or self._pending_bytes + size > self.max_pending_bytes:
                raise Unavailable("too many events are waiting for Kafka")
            self._queue.append(record)
            self._pending += 1
            self._pending_bytes += size
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                batch, self._queue = self._queue, deque()
                if not batch:
                    return
            for record in batch:
                self._send(record)

    def _send(self, record: Record) -> None:
        try:
            future = self._producer.send(record.topic, key=record.key, value=record.value)
        except Exception as exc:  # noqa: BLE001 - a broker timeout or a broken producer
            self._failed(record, exc)
        else:
            future.add_callback(self._delivered, record)
            future.add_errback(self._failed, record)

    def _settle(self, record: Record) -> None:
        with self._lock:
            self._pending -= 1
            self._pending_bytes -= len(record.value)

    def _delivered(self, record: Record, metadata: Any) -> None:
        self._settle(record)

    def _failed(self, record: Record, exc: BaseException) -> None:
        self._settle(record)
        log.error("event %s not delivered to %s: %r", record.event_id, record.topic, exc)

    def close(self) -> None:
        """Deliver what is queued within the shutdown deadline, then close the producer."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + self.flush_ms / 1000
        with self._lock:
            self._closing = True
            self._wake.notify()
        assert self._thread is not None
        self._thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the deadline passed
            log.error("%d events still pending at shutdown: %r", self._pending, exc)
        with contextlib.suppress(Exception):  # already reported above
            self._producer.close(timeout=0)
        self._pid = 0


class EventProducer:
    """Flask extension: ``producer.init_app(app)``, then ``producer.send(event)`` in a view."""

    def init_app(self, app: Flask) -> None:
        """Give ``app`` an outbox; its producer is created per process on first use."""
        app.extensions[EXTENSION] = Outbox(app.config)

    @staticmethod
    def outbox(app: Flask | None = None) -> Outbox:
        """The outbox of ``app`` (default: the current app)."""
        return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event; raises ``Unavailable`` when it cannot be kept."""
        self.outbox().put(event)


producer = EventProducer()
