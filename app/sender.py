"""The sender: reads the log in order, hands each topic's records to Kafka, and records how far
Kafka has acknowledged every segment; a segment goes once all of it is acknowledged.

One failing topic holds back only its own records (its lane). Kafka refusing a record for
good, or a topic failing for ``COLLECTOR_DEAD_LETTER_AFTER_MS`` while Kafka takes other
topics' records, sends those records to the dead letters. The sender thread owns all of
this state; kafka-python's I/O thread only appends outcomes to ``_outcomes`` (a deque).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from . import deadletter, metrics
from .kafka_client import close_now, producer_broken, refused, want_metadata
from .ledger import Cursor, Entry, Lane
from .log import Log, records_in
from .topics import Topics

log = logging.getLogger(__name__)


class Sender:
    """Everything between the log and Kafka, for one process."""

    def __init__(self, config: Mapping[str, Any], wal: Log, topics: Topics, producer_factory: Callable[..., Any],
                 configs: dict[str, Any], outages: Callable[[], int] = lambda: 0) -> None:
        self.log = wal
        self.topics = topics
        self.producer_factory = producer_factory
        self.configs = configs
        self.outages = outages  # how many times Kafka went away (the probe's count)
        self.max_held: int = config["COLLECTOR_MAX_PENDING"]
        self.max_held_bytes: int = config["COLLECTOR_MAX_PENDING_BYTES"]
        self.lane_window = max(1, self.max_held // 4)  # in flight per topic: a stalled one keeps room for others
        self.interval_s: float = config["COLLECTOR_SEND_INTERVAL_MS"] / 1000
        self.adopt_s: float = config["COLLECTOR_SPOOL_REPLAY_MS"] / 1000
        self.stall_s: float = config["COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS"] / 1000
        self.dead_after_s: float = config["COLLECTOR_DEAD_LETTER_AFTER_MS"] / 1000
        self.fsync_s: float = config["COLLECTOR_SPOOL_FSYNC_MS"] / 1000
        self.heard = 0.0  # monotonic time of Kafka's last acknowledgement (read by readiness)
        self.delivered = 0  # events Kafka acknowledged, in all (read by the drain command)
        self.backlog = 0  # bytes of this process's segments not yet acknowledged, as of the last pass
        self.beat = 0.0  # monotonic time of the last pass (read by readiness)
        self.producer: Any = None
        self._outcomes: deque[tuple[int, Entry, BaseException | None]] = deque()
        self._generation = 0
        self.stop = threading.Event()  # set by ``Delivery.close`` after it sets ``deadline``
        self.deadline = 0.0
        self.host = config["COLLECTOR_SENDER"] == "host"
        self._election: int | None = None  # the fd of sender.lock, with one sender per host
        self._sync_at = 0.0

    # -- the loop -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start over from what the ack files record: a new producer, nothing held in memory."""
        self._generation += 1  # outcomes of the old producer are ignored from now on
        if self.producer is not None:
            close_now(self.producer)
        self.producer = self.producer_factory(**self.configs)
        self.topics.forget()
        self._primed: set[str] = set()  # topics whose metadata the producer was asked for
        self._outages = self.outages()
        self.cursors = [Cursor(s) for s in self.log.owned()]
        self.lanes: dict[str, Lane] = {}
        self.held = self.held_bytes = self._seq = 0
        self.blocked = False  # the last read stopped at the memory bound
        self._adopt_at = 0.0
        self._replace = ""

    def run(self) -> None:
        """Passes until ``stop`` is set, then go on delivering until ``deadline``. With one
        sender per host, first wait to be elected: to hold the lock of ``sender.lock``."""
        if self.host and not self._elected():
            return
        self.reset()
        while not self.stop.wait(self.interval_s):
            self.step()
        self.finish(self.deadline)

    def _elected(self) -> bool:
        if self._election is None:
            self.log.dir.mkdir(parents=True, exist_ok=True)
            self._election = os.open(self.log.dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o640)
        while True:
            self.beat = now = time.monotonic()
            try:
                fcntl.flock(self._election, fcntl.LOCK_EX | fcntl.LOCK_NB)
                log.info("this worker sends the events of every worker on the host")
                return True
            except BlockingIOError:
                pass
            if self.fsync_s and now >= self._sync_at:  # this worker's own appends still need it
                self._sync_at = now + self.fsync_s
                self.log.sync()
            if self.stop.wait(0.5):  # the elected one's death frees the lock: taken over within a second
                return False

    def step(self) -> None:
        """One pass: settle, adopt, read, send, watch, record, sync."""
        now = self.beat = time.monotonic()
        self._settle(now)
        if self.host or now >= self._adopt_at:
            self._adopt_at = now + self.adopt_s
            self.log.adopt(follow=self.host)
        followed = {id(c.segment) for c in self.cursors}
        self.cursors += [Cursor(s) for s in self.log.owned() if id(s) not in followed]
        self._read()
        self._send(now)
        self._watch(now)
        self._advance()
        if self.fsync_s and now >= self._sync_at:
            self._sync_at = now + self.fsync_s
            self.log.sync()
        metrics.PENDING.set(self.held)
        self.backlog = sum(c.backlog() for c in self.cursors)  # read by tests and the drain command
        metrics.BACKLOG_BYTES.set(self.backlog)
        oldest = min((c.unsettled[0].record.accepted_at for c in self.cursors if c.unsettled), default=0.0)
        metrics.OLDEST_SECONDS.set(time.time() - oldest if oldest else 0.0)
        metrics.flush()
        if self.outages() != self._outages:
            # The broker that comes back may be a new one, without the topics: a producer that
            # still knew them was seen to have records acknowledged there and never stored.
            self._replace = "Kafka went away; every topic is checked before anything is sent again"
        if self._replace:
            log.error("replacing the Kafka producer (%s); unacknowledged events are sent again", self._replace)
            self.reset()

    def finish(self, deadline: float) -> None:
        """At exit: go on delivering until the log is empty or ``deadline``; the rest stays in the log."""
        self.step()
        while (self.backlog or self.held) and time.monotonic() < deadline:
            time.sleep(min(self.interval_s, max(0.0, deadline - time.monotonic())))
            self.step()
        self._settle(time.monotonic())
        self._advance()
        self.log.sync()
        close_now(self.producer)
        self.topics.close()
        for cursor in self.cursors:
            self.log.remove(cursor.segment, delete=cursor.finished)
        if self._election is not None:
            os.close(self._election)  # the next worker takes over
            self._election = None

    # -- the log -> lanes -----------------------------------------------------------------------

    def _read(self) -> None:
        self.blocked = False
        for cursor in self.cursors:
            for offset, record, after in records_in(cursor.segment, cursor.position):
                if record is None:
                    self._damaged(cursor, offset)
                    break
                self._seq += 1
                entry = Entry(self._seq, cursor, offset, record)
                cursor.unsettled.append(entry)
                self.lanes.setdefault(record.topic, Lane()).waiting.append(entry)
                cursor.position = after
                self.held += 1
                self.held_bytes += len(record.value)
                if self.held >= self.max_held or self.held_bytes >= self.max_held_bytes:
                    self.blocked = True
                    return
            if cursor.segment.sealed and cursor.position < cursor.segment.size:
                self._damaged(cursor, cursor.position)  # a record torn by a crash mid-write

    def _damaged(self, cursor: Cursor, offset: int) -> None:
        lost = cursor.segment.size - offset
        log.error("segment %s: %d bytes from offset %d are damaged or torn; skipped", cursor.segment.path.name,
                  lost, offset)
        metrics.LOST.inc()
        cursor.position = cursor.segment.size

    # -- lanes -> Kafka -------------------------------------------------------------------------

    def _send(self, now: float) -> None:
        wanted = [t for t, lane in self.lanes.items() if lane.waiting]
        self.topics.ensure([t for t in wanted if t not in self.topics])
        if fresh := [t for t in wanted if t in self.topics and t not in self._primed]:
            want_metadata(self.producer, fresh)
            self._primed.update(fresh)
        for topic, lane in self.lanes.items():
            if not lane.waiting or now < lane.retry_at or (lane.returned and lane.in_flight):
                continue  # records that failed go again only once the rest has settled, in order
            if topic not in self.topics:
                lane.failed("the topic could not be created", self.interval_s, now)
                continue
            waiting = lane.ordered()
            while waiting and lane.in_flight < self.lane_window:
                entry = waiting[0]
                try:
                    future = self.producer.send(topic, key=entry.record.key, value=entry.record.value)
                except Exception as exc:  # noqa: BLE001 - sorted below
                    if producer_broken(exc):
                        self._replace = f"it failed a send: {exc!r}"
                        return
                    if refused(exc):
                        self._dead(lane, repr(exc), [waiting.popleft()])
                        continue
                    lane.failed(repr(exc), self.interval_s, now)
                    self.topics.forget(topic)  # it may have vanished: check before the next try
                    break
                waiting.popleft()
                entry.sent_at = now
                lane.flight.append(entry)
                lane.in_flight += 1
                future.add_callback(self._outcome, self._generation, entry)
                future.add_errback(self._failure, self._generation, entry)

    def _outcome(self, generation: int, entry: Entry, metadata: Any) -> None:
        self._outcomes.append((generation, entry, None))  # kafka-python's I/O thread: note it, no more

    def _failure(self, generation: int, entry: Entry, exc: BaseException) -> None:
        self._outcomes.append((generation, entry, exc))

    def _settle(self, now: float) -> None:
        delivered = 0
        while self._outcomes:
            generation, entry, exc = self._outcomes.popleft()
            if generation != self._generation or entry.settled:
                continue
            lane = self.lanes[entry.record.topic]
            lane.in_flight -= 1
            if exc is None:
                self._settled(entry)
                lane.delivered()
                delivered += 1
                metrics.DELIVERY_SECONDS.observe(time.time() - entry.record.accepted_at)
            elif refused(exc):
                self._dead(lane, repr(exc), [entry])
            else:
                metrics.FAILED.inc()
                lane.failed(repr(exc), self.interval_s, now)
                lane.back(entry)
                self.topics.forget(entry.record.topic)
        if delivered:
            self.heard = now
            self.delivered += delivered
            metrics.DELIVERED.inc(delivered)

    def _settled(self, entry: Entry) -> None:
        entry.settled = True
        self.held -= 1
        self.held_bytes -= len(entry.record.value)

    # -- what waits too long --------------------------------------------------------------------

    def _watch(self, now: float) -> None:
        """Check the topic of a lane whose records wait too long (it may have vanished), and
        dead-letter a topic that keeps failing while Kafka takes the others, or that fills the
        memory the others need."""
        for topic, lane in self.lanes.items():
            sent = lane.oldest_send()
            if sent and now - sent > self.stall_s:
                if not lane.failing_since:
                    lane.failed(f"no acknowledgement for {now - sent:.0f} s", self.interval_s, now)
                self.topics.forget(topic)
                self.topics.ensure([topic])
            others_fine = self.heard > lane.failing_since  # Kafka took something in a later pass
            if lane.failing_since and lane.waiting and others_fine and now - lane.failing_since > self.dead_after_s:
                self._dead(lane, f"{lane.error}; failing for {now - lane.failing_since:.0f} s")
        if self.blocked and self.heard > now - self.stall_s:
            lane = max(self.lanes.values(), key=lambda lane: len(lane.waiting))
            if lane.failing_since and len(lane.waiting) * 2 > self.held:
                self._dead(lane, f"{lane.error}; held back while the collector's memory bound "
                                 f"({self.max_held} events) was full")

    def _dead(self, lane: Lane, reason: str, entries: list[Entry] | None = None) -> None:
        """Move records Kafka will not take (default: all the lane's waiting ones) to the dead
        letters; they wait in the lane again if that fails."""
        if entries is None:
            entries = list(lane.waiting)
            lane.waiting.clear()
        try:
            deadletter.write(self.log.dir, [e.record for e in entries], reason)
        except OSError as exc:
            log.error("dead letters not written (%r): %d events wait in memory", exc, len(entries))
            for entry in entries:
                lane.back(entry)
            return
        for entry in entries:
            self._settled(entry)
            log.error("event %s dead-lettered (topic %s): %s", deadletter.event_id(entry.record),
                      entry.record.topic, reason)
        metrics.DEAD_LETTER.inc(len(entries))

    def _advance(self) -> None:
        """Record how far each segment is acknowledged; let go of the finished ones."""
        for cursor in list(self.cursors):
            try:
                cursor.record_mark()
            except OSError as exc:
                log.error("ack position of %s not recorded: %r", cursor.segment.path.name, exc)
            segment = cursor.segment
            if not segment.sealed and segment.size and cursor.mark() == segment.size:
                self.log.seal(segment, segment.size)  # all acknowledged: an idle log leaves no file behind
            if cursor.finished:
                self.cursors.remove(cursor)
                self.log.remove(segment, delete=True)
