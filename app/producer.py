"""The Kafka producer as a Flask extension: one per worker process, fed through a bounded queue.

A request never talks to the broker: it appends the serialized record to this process's
outbox and returns. A sender thread hands records to kafka-python, whose own I/O thread
delivers them. What Kafka fails, what does not fit the outbox's bound (count and bytes),
and what an exiting worker still holds goes to the spool on disk; once anything is spooled,
new events queue behind it there until a replayer thread has delivered it all. When the
spool cannot keep an event either, ``put`` raises ``Unavailable`` (a 503).
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
from typing import Any

import orjson
from flask import Flask, current_app
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import IllegalStateError, KafkaError, KafkaTimeoutError

from . import metrics
from .spool import Record, Spool, SpoolFull

log = logging.getLogger(__name__)
EXTENSION = "collector.producer"


class Unavailable(Exception):
    """The collector cannot keep this event now: the caller should retry later (503)."""


def kafka_producer(**configs: Any) -> Any:
    """Create a kafka-python producer (the default factory; tests pass a fake one)."""
    return KafkaProducer(**configs)


def kafka_admin(**configs: Any) -> Any:
    """Create a kafka-python admin client (the default factory; tests pass a fake one)."""
    return KafkaAdminClient(
        bootstrap_servers=configs["bootstrap_servers"], client_id=configs["client_id"],
        api_version=configs["api_version"], bootstrap_timeout_ms=configs["max_block_ms"],
        request_timeout_ms=configs["request_timeout_ms"], reconnect_backoff_max_ms=1000,
    )


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
        "batch_size": config["COLLECTOR_KAFKA_BATCH_BYTES"],
        "compression_type": None
        if config["COLLECTOR_KAFKA_COMPRESSION"] == "none"
        else config["COLLECTOR_KAFKA_COMPRESSION"],
        "max_block_ms": config["COLLECTOR_KAFKA_MAX_BLOCK_MS"],
        "delivery_timeout_ms": config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"],
        "request_timeout_ms": min(config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"] // 2, 30_000),
        "reconnect_backoff_max_ms": 1000,
    }


class Outbox:
    """This process's bounded queue of events on their way to Kafka, and its spool."""

    REPLAY_CHUNK = 500

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.template: str = config["COLLECTOR_TOPIC_TEMPLATE"]
        self.max_pending: int = config["COLLECTOR_MAX_PENDING"]
        self.max_pending_bytes: int = config["COLLECTOR_MAX_PENDING_BYTES"]
        self.flush_s: float = config["COLLECTOR_SHUTDOWN_FLUSH_MS"] / 1000
        self.send_interval_s: float = config["COLLECTOR_SEND_INTERVAL_MS"] / 1000
        self.replay_s: float = config["COLLECTOR_SPOOL_REPLAY_MS"] / 1000
        self.delivery_s: float = config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"] / 1000
        self.ready_s: float = config["COLLECTOR_READY_MAX_AGE_MS"] / 1000
        self.factory: Callable[..., Any] = config.get("COLLECTOR_KAFKA_FACTORY") or kafka_producer
        self.admin_factory: Callable[..., Any] = config.get("COLLECTOR_KAFKA_ADMIN_FACTORY") or kafka_admin
        self.new_topic = (config["COLLECTOR_TOPIC_PARTITIONS"], config["COLLECTOR_TOPIC_REPLICATION"])
        self.configs = producer_configs(config)
        self.spool = Spool(config["COLLECTOR_SPOOL_DIR"], config["COLLECTOR_SPOOL_MAX_BYTES"])
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pid = 0
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Record] = deque()  # accepted, not yet handed to kafka-python
        self._inflight: dict[int, Record] = {}  # handed to kafka-python, not yet acknowledged
        self._seq = 0
        self._acked: deque[int] = deque()  # acknowledged by Kafka, for the sender thread to settle
        self._held_bytes = 0  # of the queued and in-flight records
        self._progress = time.monotonic()  # last acknowledgement or failure
        self._spooling = False  # new events go to the spool, behind the ones there, until it drains
        self._retry_at = 0.0  # the sender pauses till then (Kafka failed what the spool could not keep)
        self._broken = False  # the producer failed in a way only a new one mends
        self._closing = False
        self._stop = threading.Event()
        self._producer: Any = None
        self._threads: list[threading.Thread] = []
        self._admin: Any = None
        self._topics: set[str] = set()  # known to exist
        self._admin_lock = threading.Lock()
        self._heard = 0.0  # when Kafka last answered (an acknowledgement or a metadata request)
        self._problem = "no answer from Kafka yet"

    @property
    def pending(self) -> int:
        """Events this process holds in memory: not yet acknowledged by Kafka, nor spooled."""
        return len(self._queue) + len(self._inflight)

    def start(self) -> None:
        """Create this process's producer and threads (after a fork: anew)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            self._reset()
            self._producer = self.factory(**self.configs)
            self._threads = [
                threading.Thread(target=self._run, name="collector-sender", daemon=True),
                threading.Thread(target=self._replay_loop, name="collector-replayer", daemon=True),
            ]
            self._pid = os.getpid()
        for thread in self._threads:
            thread.start()
        if problem := self.spool.check():
            log.error("the spool cannot be written (%s): events Kafka fails stay in memory, and new ones get "
                      "503 once the outbox is full", problem)

    def record(self, event: dict[str, Any]) -> Record:
        """The Kafka record of an internal event: its account's topic, keyed by instance_id."""
        return Record(
            event["event_id"],
            self.template.replace("{aid}", event["account_id"]),
            event["instance_id"].encode(),
            orjson.dumps(event),
            time.monotonic(),
        )

    def put(self, events: list[dict[str, Any]]) -> None:
        """Queue internal events, all or none, in order; raises ``Unavailable``."""
        if self._pid != os.getpid():
            self.start()
        records = [self.record(e) for e in events]
        size = sum(len(r.value) for r in records)
        with self._lock:
            if self._closing:
                raise Unavailable("the collector is shutting down")
            self._queue.extend(records)
            self._held_bytes += size
            if (self._spooling or self.pending > self.max_pending
                    or self._held_bytes > self.max_pending_bytes):
                try:
                    self._spool([], "more events than the outbox holds")
                except Unavailable:
                    for _ in records:
                        self._queue.pop()
                    self._held_bytes -= size
                    raise
            metrics.count(metrics.ACCEPTED, len(records))  # counted before the sender can deliver them

    def _spool(self, records: list[Record], why: str) -> None:
        """Spool ``records``, then every queued record behind them, and keep spooling until the
        replayer has drained the spool. The caller holds the lock. Raises ``Unavailable`` with
        nothing changed when the spool cannot keep them."""
        spooled = records + list(self._queue)
        try:
            self.spool.append(spooled)
        except (SpoolFull, OSError) as exc:
            raise Unavailable(f"Kafka is not taking events now and the spool cannot keep them ({exc})") from None
        self._held_bytes -= sum(len(r.value) for r in self._queue)
        self._queue.clear()
        metrics.SPOOLED.inc(len(spooled))
        if not self._spooling:
            self._spooling = True
            log.warning("spooling events until the spool drains: %s", why)

    def _spool_or_retry(self, records: list[Record], why: str) -> None:
        """Spool records answered 204 that Kafka did not take; when the spool cannot keep
        them, keep them at the head of the queue and retry them after a pause."""
        try:
            self._spool(records, why)
        except Unavailable as exc:
            if time.monotonic() >= self._retry_at:  # once per pause, not once per event
                log.error("events kept in memory to retry in %.1f s: %s (%s)", self.replay_s, exc, why)
            self._queue.extendleft(reversed(records))
            self._held_bytes += sum(len(r.value) for r in records)
            self._retry_at = time.monotonic() + self.replay_s
            self._wake.notify()

    # -- the sender thread: queue -> kafka-python ------------------------------------------

    def _run(self) -> None:
        while True:
            metrics.flush()
            with self._lock:
                self._settle()
                if not self._queue and self._closing:
                    return
                if not self._queue or (time.monotonic() < self._retry_at and not self._closing):
                    # Polled rather than woken by each put, and in bursts: each wake-up of this
                    # thread or of kafka-python's cost the request thread more (the GIL, the
                    # caches) than the milliseconds it adds to delivery.
                    self._wake.wait(max(self.send_interval_s, self._retry_at - time.monotonic()))
                    continue
                if not self._inflight:
                    self._progress = time.monotonic()
                batch = []
                for record in self._queue:
                    self._seq += 1
                    self._inflight[self._seq] = record
                    batch.append((self._seq, record))
                self._queue.clear()
            for index, (seq, record) in enumerate(batch):
                if record.topic not in self._topics:
                    self._create_topic(record.topic)
                try:
                    future = self._producer.send(record.topic, key=record.key, value=record.value)
                except Exception as exc:  # noqa: BLE001 - a metadata timeout, or a broken producer
                    if not isinstance(exc, KafkaTimeoutError):
                        self._broken = True
                    # The rest of the batch goes with it, in order, ahead of what came since.
                    self._failed([s for s, _ in batch[index:]], exc)
                    break
                future.add_callback(self._delivered, seq)
                future.add_errback(self._failed, [seq])

    def _take(self, seq: int) -> Record | None:
        record = self._inflight.pop(seq, None)
        if record is not None:
            self._held_bytes -= len(record.value)
            self._progress = time.monotonic()
        return record

    def _delivered(self, seq: int, metadata: Any) -> None:
        # Kafka's I/O thread runs this for every record: it only notes the record, and the
        # sender thread settles the notes in bulk under one lock (_settle).
        self._acked.append(seq)

    def _settle(self) -> None:
        """Forget the records Kafka acknowledged since the last call. The caller holds the lock."""
        if not self._acked:
            return
        now = self._heard = time.monotonic()
        delivered = 0
        while self._acked:
            record = self._take(self._acked.popleft())
            if record is not None:
                delivered += 1
                metrics.DELIVERY_SECONDS.observe(now - record.accepted_at)
        metrics.DELIVERED.inc(delivered)

    def _failed(self, seqs: list[int], exc: BaseException) -> None:
        metrics.FAILED.inc(len(seqs))
        self._problem = f"Kafka failed an event: {exc!r}"
        with self._lock:
            records = [r for r in map(self._take, seqs) if r is not None]
            if records:
                self._spool_or_retry(records, f"not delivered: {exc!r}")

    def _create_topic(self, topic: str) -> None:
        """Create an account's topic with the configured partitions and replication, once
        per process, before its first event; one that exists already is fine."""
        with self._admin_lock:
            if topic in self._topics:
                return
            try:
                if self._admin is None:
                    self._admin = self.admin_factory(**self.configs)
                partitions, replication = self.new_topic
                result = self._admin.create_topics([NewTopic(topic, partitions, replication)], raise_errors=False)
                [answer] = result["topics"]
                if answer["error_code"] not in (0, 36):  # 36: the topic exists already
                    raise KafkaError(f"error {answer['error_code']}: {answer['error_message']}")
            except Exception as exc:  # noqa: BLE001 - the send that follows fails or spools as usual
                log.warning("topic %s not created (%r); sending anyway", topic, exc)
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
                return
            self._topics.add(topic)

    # -- the replayer thread: spool -> kafka-python ----------------------------------------

    def _replay_loop(self) -> None:
        while not self._stop.wait(self.replay_s):
            metrics.PENDING.set(self.pending)
            try:
                if time.monotonic() - self._heard > self.ready_s / 2:
                    self._probe()
                self.replay()
            except Exception:  # noqa: BLE001 - keep replaying; the next pass may succeed
                log.exception("spool replay failed")

    def _probe(self) -> None:
        """Ask Kafka for its cluster's metadata: readiness needs a recent answer."""
        with self._admin_lock:
            try:
                if self._admin is None:
                    self._admin = self.admin_factory(**self.configs)
                self._admin.describe_cluster()
            except Exception as exc:  # noqa: BLE001 - what readiness reports
                self._problem = f"Kafka does not answer: {exc!r}"
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
                return
        self._heard = time.monotonic()

    def unready(self) -> str | None:
        """Why this worker is not ready (no answer from Kafka lately), or None; never blocks."""
        age = time.monotonic() - self._heard
        if age <= self.ready_s:
            return None
        if self._heard == 0:
            return self._problem
        return f"no answer from Kafka for {age:.0f} s; last problem: {self._problem}"

    def replay(self) -> None:
        """One pass: mend the producer if need be, replay every spool file nobody holds."""
        with self._lock:
            wedged = bool(self._inflight) and time.monotonic() - self._progress > 2 * self.delivery_s
        if self._broken or wedged:
            self._replace_producer("wedged" if wedged else "broken")
        self.spool.rotate()
        for path in self.spool.files():
            claim = self.spool.claim(path)
            if claim is None:
                continue
            try:
                for chunk in claim.chunks(self.REPLAY_CHUNK):
                    if self._stop.is_set() or not self._deliver(chunk):
                        return  # Kafka is not taking them yet: the next pass retries the file
                claim.done()
                log.info("replayed spool file %s", path.name)
            finally:
                claim.release()
        with self._lock:
            if self._spooling and not self.spool.writing and not self.spool.own_files():
                self._spooling = False
                log.info("spool drained: sending events to Kafka directly again")

    def _deliver(self, records: list[Record]) -> bool:
        """Send records and wait for Kafka to acknowledge them all."""
        outcomes: list[BaseException | None] = []
        settled = threading.Condition()

        def settle(outcome: BaseException | None) -> None:
            with settled:
                outcomes.append(outcome)
                settled.notify()

        for topic in {r.topic for r in records} - self._topics:
            self._create_topic(topic)
        try:
            for r in records:
                future = self._producer.send(r.topic, key=r.key, value=r.value)
                future.add_callback(lambda _: settle(None))
                future.add_errback(settle)
        except Exception as exc:  # noqa: BLE001 - Kafka is still down, or the producer broke
            outcomes.append(exc)
            if not isinstance(exc, KafkaError) or isinstance(exc, IllegalStateError):
                self._broken = True
        with settled:
            settled.wait_for(lambda: len(outcomes) >= len(records) or any(outcomes), self.delivery_s + 1)
            failures = [o for o in outcomes if o is not None]
            if not failures and len(outcomes) == len(records):
                metrics.REPLAYED.inc(len(records))
                self._heard = time.monotonic()
                return True
        log.warning("spool replay waits for Kafka: %r", failures[0] if failures else "no answer")
        return False

    def _replace_producer(self, why: str) -> None:
        """Swap in a new producer; spool what the old one held."""
        log.error("replacing the Kafka producer (%s)", why)
        old, self._producer = self._producer, self.factory(**self.configs)
        self._broken = False
        with self._lock:
            self._settle()
            stranded = [self._take(seq) for seq in list(self._inflight)]
            self._spool_or_retry([r for r in stranded if r is not None], f"the producer was {why}")
        with contextlib.suppress(Exception):
            old.close(timeout=0)

    def close(self) -> None:
        """At exit: deliver what is held within the deadline, spool the rest, close the producer."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + self.flush_s
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._stop.set()
        self._threads[0].join(max(0.0, deadline - time.monotonic()))
        try:
            self._producer.flush(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the deadline passed
            log.warning("Kafka did not acknowledge everything before the deadline: %r", exc)
        with self._lock:
            self._settle()
            if self.pending:
                log.warning("%d events not acknowledged at exit: spooled for the next worker", self.pending)
                stranded = [r for r in map(self._take, list(self._inflight)) if r is not None]
                try:
                    self._spool(stranded, "the worker is exiting")
                except Unavailable as exc:
                    for record in stranded + list(self._queue):
                        log.error("event %s LOST: %s", record.event_id, exc)
                        metrics.LOST.inc()
        with contextlib.suppress(Exception):
            self._producer.close(timeout=0)
        self.spool.rotate()
        metrics.flush()
        self._pid = 0


class EventProducer:
    """Flask extension: ``producer.init_app(app)``, then ``producer.outbox(app).put(events)``."""

    def init_app(self, app: Flask) -> None:
        """Give ``app`` an outbox; its producer is created per process on first use."""
        app.extensions[EXTENSION] = Outbox(app.config)

    @staticmethod
    def outbox(app: Flask | None = None) -> Outbox:
        """The outbox of ``app`` (default: the current app)."""
        return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]


producer = EventProducer()
