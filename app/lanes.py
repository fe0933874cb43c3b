"""The Kafka side of the sender: one lane per topic, so that a failing topic holds back only its
own records, and the producer the lanes share.

Owned by the sender thread; kafka-python's I/O thread only appends outcomes to ``_outcomes``
(a deque, whose appends and pops are atomic).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import deadletter, metrics
from .kafka_client import close_now, forget_topics, producer_broken, refused, with_metadata
from .ledger import Entry, Lane
from .logs import Throttle, plural
from .topics import Topics

if TYPE_CHECKING:
    from .config import Settings
    from .segment import Record

log = logging.getLogger(__name__)
dropping = Throttle(log)  # rejects dropped: once a minute, with a count


class Lanes:
    """Every topic's lane, the records they hold, and the producer they send through."""

    def __init__(self, settings: Settings, spool: Path, topics: Topics) -> None:
        self.topics = topics
        self.max_held = settings.max_pending
        self.max_held_bytes = settings.max_pending_bytes
        self.lane_window = max(1, self.max_held // 4)  # in flight per topic: a stalled one keeps room for others
        self.interval_s = settings.send_interval_ms / 1000
        self.dead_letters = DeadLetters(spool, self.interval_s, settings.dead_letter_max_bytes, settings.rejects_topic)
        self.stall_s = settings.kafka_delivery_timeout_ms / 1000
        self.max_block_s = settings.kafka_max_block_ms / 1000
        self.dead_after_s = settings.dead_letter_after_ms / 1000
        self.rejects_topic = settings.rejects_topic  # its records are counted apart from events
        self.heard = 0.0  # monotonic time of Kafka's last acknowledgement (read by readiness)
        self.delivered = 0  # events Kafka acknowledged, in all (read by the drain command)
        self.producer: Any = None
        self._outcomes: deque[tuple[int, Entry, BaseException | None, float]] = deque()
        self._generation = 0
        self._clear()

    def reset(self, producer: Any) -> None:
        """Start over with ``producer`` and nothing held; the old producer's outcomes are ignored."""
        self._generation += 1
        if self.producer is not None:
            close_now(self.producer)
        self.producer = producer
        self.topics.forget()
        self._clear()

    def _clear(self) -> None:
        self.by_topic: dict[str, Lane] = {}
        self.held = self.held_bytes = 0
        self.broken = ""  # why the producer must be replaced, when it must

    @property
    def full(self) -> bool:
        return self.held >= self.max_held or self.held_bytes >= self.max_held_bytes

    def add(self, entry: Entry) -> None:
        """A record read from the log joins its topic's lane."""
        if (lane := self.by_topic.get(entry.record.topic)) is None:
            lane = self.by_topic[entry.record.topic] = Lane()
        lane.waiting.append(entry)
        self.held += 1
        self.held_bytes += len(entry.record.value)

    def close(self) -> None:
        close_now(self.producer)
        self.topics.close()

    def send(self, now: float) -> None:
        """Hand each lane's waiting records to the producer, in order, as far as its window allows."""
        wanted = [t for t, lane in self.by_topic.items() if lane.waiting]
        # Those in flight too: a topic the producer was told to forget (see watch) is asked for again.
        ready = with_metadata(self.producer, [t for t, lane in self.by_topic.items() if lane.waiting or lane.in_flight])
        self.topics.awaited([t for t in wanted if t not in ready], now)
        for topic, lane in self.by_topic.items():
            if not lane.waiting or now < lane.retry_at or (lane.returned and lane.in_flight):
                continue  # records that failed go again only once the rest has settled, in order
            if topic not in ready:  # its metadata is on the way; after max_block_ms, check the topic again
                if self.topics.overdue(topic, now, self.max_block_s):
                    lane.failed("no metadata for the topic" if topic in self.topics else
                                "the topic could not be created", self.interval_s, now)
                    self.topics.forget(topic)
                continue
            waiting = lane.ordered()
            while waiting and lane.in_flight < self.lane_window:
                entry = waiting[0]
                try:
                    future = self.producer.send(topic, key=entry.record.key, value=entry.record.value)
                except Exception as exc:  # noqa: BLE001 - sorted below
                    if producer_broken(exc):
                        self.broken = f"it failed a send: {exc!r}"
                        return
                    if not refused(exc):
                        lane.failed(repr(exc), self.interval_s, now)
                        self.topics.forget(topic)  # it may have vanished: check before the next try
                    elif self._dead(lane, repr(exc), now, [waiting.popleft()]):
                        continue
                    break  # this lane waits for its back-off
                waiting.popleft()
                entry.sent_at = now
                lane.flight.append(entry)
                lane.in_flight += 1
                outcome = partial(self._outcome, self._generation, entry)  # one per record, for both
                future.add_callback(outcome)
                future.add_errback(outcome)

    def _outcome(self, generation: int, entry: Entry, result: Any) -> None:
        """Kafka's answer (its metadata, or an exception), in kafka-python's I/O thread: noted with
        its time (the delivery's), no more."""
        exc = result if isinstance(result, BaseException) else None
        self._outcomes.append((generation, entry, exc, time.time()))

    def settle(self, now: float) -> None:
        """Take in Kafka's answers: delivered, refused for good (dead letters), or to retry."""
        delivered: list[tuple[Record, float]] = []  # each delivered record, and when Kafka acknowledged it
        while self._outcomes:
            generation, entry, exc, acknowledged = self._outcomes.popleft()
            if generation != self._generation or entry.settled:
                continue
            lane = self.by_topic[entry.record.topic]
            lane.in_flight -= 1
            if exc is None:
                self._settled(entry)
                lane.delivered()
                delivered.append((entry.record, acknowledged))
            elif refused(exc):
                self._dead(lane, repr(exc), now, [entry])
            else:
                metrics.FAILED.inc()
                lane.failed(repr(exc), self.interval_s, now)
                lane.back(entry)
                self.topics.forget(entry.record.topic)
        if delivered:
            self.heard = now
            self.delivered += counted(delivered, self.rejects_topic)

    def _settled(self, entry: Entry) -> None:
        entry.settled = True
        self.held -= 1
        self.held_bytes -= len(entry.record.value)

    def watch(self, now: float, blocked: bool, answered: float) -> None:
        """Check the topic of a lane whose records wait too long (it may have vanished), and
        dead-letter a topic that keeps failing while Kafka takes the others, or that fills the
        memory the others need while Kafka itself answers (``answered``: the probe's last answer).
        Drop the lanes with nothing to do, failing or not (every pass goes over them), and let
        Topics and the producer forget the topics idle for long (each would keep them all)."""
        idle = [t for t, lane in self.by_topic.items() if not lane.waiting and not lane.in_flight]
        for topic in idle:
            del self.by_topic[topic]
        self.topics.idle(idle, now)
        forget_topics(self.producer, self.topics.expired(now, self.by_topic))
        for topic, lane in self.by_topic.items():
            sent = lane.oldest_send()
            if sent and now - sent > self.stall_s:
                if not lane.failing_since:
                    lane.failed(f"no acknowledgement for {now - sent:.0f} s", self.interval_s, now)
                self.topics.forget(topic)
                self.topics.ensure([topic])
            given_up = topic == self.rejects_topic or (  # a reject is not owed delivery: dropped at a failure
                self.heard > lane.failing_since and now - lane.failing_since > self.dead_after_s)  # others flow
            if lane.failing_since and lane.waiting and given_up:
                self._dead(lane, f"{lane.error}; failing for {now - lane.failing_since:.0f} s", now)
        if blocked and self.by_topic and answered > now - self.stall_s:
            lane = max(self.by_topic.values(), key=lambda lane: len(lane.waiting))
            # Failing for longer than a delivery may take, not merely slow to start (its metadata
            # late under load): a bench run dead-lettered a healthy topic before this.
            if lane.failing_since and now - lane.failing_since > self.stall_s and len(lane.waiting) * 2 > self.held:
                self._dead(lane, f"{lane.error}; held back while the collector's memory bound "
                                 f"({self.max_held} events) was full", now)

    def _dead(self, lane: Lane, reason: str, now: float, entries: list[Entry] | None = None) -> bool:
        """Dead-letter records Kafka will not take (default: all the lane's waiting ones); False if they wait."""
        buried = self.dead_letters.take(lane, reason, now, entries)
        for entry in buried:
            self._settled(entry)
        return bool(buried)


def counted(delivered: list[tuple[Record, float]], rejects_topic: str) -> int:
    """Count delivered records in the metrics, the rejects apart from the events (their latency
    is the events'); how many were events."""
    latencies = [acknowledged - r.accepted_at for r, acknowledged in delivered if r.topic != rejects_topic]
    if len(latencies) < len(delivered):
        metrics.REJECTS_DELIVERED.inc(len(delivered) - len(latencies))
    if latencies:
        metrics.DELIVERED.inc(len(latencies))
        metrics.observe(metrics.DELIVERY_SECONDS, latencies)
    return len(latencies)


class DeadLetters:
    """Where the lanes put the records Kafka will not take, and the back-off while the disk will
    not take them either (full, out of descriptors): the sender never takes them again at once."""

    def __init__(self, spool: Path, backoff_s: float, most: int, rejects_topic: str) -> None:
        self.spool = spool
        self.rejects_topic = rejects_topic
        self.backoff_s = backoff_s
        self.most = most  # COLLECTOR_DEAD_LETTER_MAX_BYTES
        self.after = 0.0  # monotonic time before which none is tried: the last could not be written

    def take(self, lane: Lane, reason: str, now: float, entries: list[Entry] | None = None) -> list[Entry]:
        """Write ``entries`` (default: the lane's waiting records, taken from it) to the dead letters
        and return them; or leave them waiting in the lane, which backs off, and return none. The
        rejects topic's records are returned and counted as dropped, never written: a reject is not
        owed delivery, and neither the dead letters nor the log may fill with them."""
        taken = list(lane.waiting) if entries is None else entries
        if taken and taken[0].record.topic == self.rejects_topic:  # a lane holds one topic's records
            if entries is None:
                lane.waiting.clear()
            metrics.REJECTS_DROPPED.inc(len(taken))
            dropping.warning("%s dropped, as Kafka would not take them (%s)", plural(len(taken), "reject"), reason)
            return taken
        if now >= self.after:
            buried = list(lane.waiting) if entries is None else entries
            if deadletter.bury(self.spool, [e.record for e in buried], reason, self.most):
                if entries is None:
                    lane.waiting.clear()
                return buried
        for entry in entries or []:
            lane.back(entry)
        lane.failed(lane.error if entries is None else reason, self.backoff_s, now)
        self.after = max(self.after, lane.retry_at)
        return []
