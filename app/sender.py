"""The sender: reads the log in order into the lanes (``lanes.py``), and records how far Kafka
has acknowledged every segment; a segment goes once all of it is acknowledged. One per worker,
or one per host (``COLLECTOR_SENDER=host``): the worker that holds ``sender.lock``.

The sender thread owns all of this state.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import metrics
from .election import Election
from .lanes import Lanes
from .ledger import Cursor, advance, read
from .log import Log
from .logs import Throttle
from .topics import Topics
from .wakeup import Wakeup

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)
repeated = Throttle(log)  # a producer failing again and again: once a minute


class Sender:
    """Everything between the log and Kafka, for one process."""

    def __init__(self, settings: Settings, wal: Log, topics: Topics, producer_factory: Callable[..., Any],
                 configs: dict[str, Any], outages: Callable[[], int] = lambda: 0,
                 answered: Callable[[], float] = lambda: 0.0, candidate: bool = True) -> None:
        self.log = wal
        self.lanes = Lanes(settings, wal.dir, topics)
        self.producer_factory = producer_factory
        self.configs = configs
        self.outages = outages  # how many times Kafka went away (the probe's count)
        self.answered = answered  # when Kafka last answered the probe
        self.interval_s = settings.send_interval_ms / 1000
        self.adopt_s = settings.spool_replay_ms / 1000
        self.fsync_s = settings.spool_fsync_ms / 1000
        self.host = settings.sender != "worker"
        self.candidate = candidate  # False: a web worker beside the sender process, never elected
        self.woken = settings.sender == "process" and candidate  # the sender process: woken by appends
        self.backlog = 0  # bytes of the segments followed not yet acknowledged, as of the last pass
        self.beat = 0.0  # monotonic time of the last pass's start (read by readiness)
        self.passes = 0  # passes completed (read by tests and the cost bench: one that began after X)
        self.stop = threading.Event()  # set by ``Pipeline.close`` after it sets ``deadline``
        self.deadline = 0.0
        self.cursors: list[Cursor] = []
        self.election = Election(wal.dir)
        self.elected = False  # with one sender per host: this thread won the election
        self.host_beat = 0.0  # when the host's elected sender last ran, as last read (0.0: unknown)
        self.began = time.monotonic()  # when this sender began to wait for the host's (readiness)
        self.replaced = (0.0, "")  # a death seen, when and words: the sender thread's, read by /readyz
        self._sync_at = self._tidy_at = self._full_at = 0.0

    @property
    def heard(self) -> float:
        """Monotonic time of Kafka's last acknowledgement (read by readiness)."""
        return self.lanes.heard

    producer = property(lambda self: self.lanes.producer)
    held = property(lambda self: self.lanes.held, doc="Records read from the log and not yet settled.")

    def reset(self) -> None:
        """Start over from what the ack files record: a new producer, nothing held in memory."""
        self.lanes.reset(self.producer_factory(**self.configs))
        self._outages = self.outages()
        self.cursors = [Cursor(s) for s in self.log.owned()]
        self._seq = 0
        self.blocked = False  # the last read stopped at the memory bound
        self._adopt_at = 0.0

    def run(self) -> None:
        """Passes until ``stop`` is set, then go on delivering until ``deadline``. With one
        sender per host, first wait to be elected: to hold the lock of ``sender.lock``."""
        if self.host and not self._elected():
            return
        self.elected = True
        self.reset()
        wakeup = Wakeup.of(self.log.dir, self.stop) if self.woken else None
        try:  # woken by appends: a quick pass at once, a full one every interval (or on a new segment)
            while not (wakeup.wait(self._full_at - time.monotonic()) if wakeup else self.stop.wait(self.interval_s)):
                self.step(full=wakeup is None or wakeup.created or time.monotonic() >= self._full_at)
            self.finish(self.deadline)
        finally:
            if wakeup:
                wakeup.close()

    def _elected(self) -> bool:
        self.began = time.monotonic()
        while True:
            self.beat = now = time.monotonic()
            if self.candidate and self.election.won():
                log.info("this process (%d) sends the events of every worker on the host", os.getpid())
                return True
            self.host_beat, held, died = self.election.follow(now, max(5.0, 10 * self.interval_s))
            if died:
                self.replaced = (now, died)
                log.error("%s", died)
            if 0 <= now - self.host_beat < 2 * self.interval_s:  # the elected sender counted lately
                self.log.counted(held)
            else:  # it is slow or stuck: this worker counts for itself
                self.log.count()
            self._chores(now)  # this worker's own appends and counts still need them
            if self.stop.wait(self.interval_s):  # the elected one's death frees the lock: taken over at once
                return False

    def step(self, full: bool = True) -> None:
        """One pass: settle, adopt, read, send, then watch, record and sync. A quick one (woken by an
        append between full ones) only takes new sizes of the segments followed, reads and sends."""
        now = time.monotonic()
        if full:
            self.beat, self._full_at = now, now + self.interval_s
            if self.host:  # what it counted last pass: a pass that never ends shows as a beat that stops
                self.election.publish(now, self.log.held)
        self.lanes.settle(now)
        if full and (self.host or now >= self._adopt_at):
            self._adopt_at = now + self.adopt_s
            self.log.adopt(follow=self.host)
        elif not full:
            self.log.adopt(follow=self.host, listing=False)
        followed = {id(c.segment) for c in self.cursors}
        self.cursors += [Cursor(s) for s in self.log.owned() if id(s) not in followed]
        self._seq, self.blocked = read(self.cursors, self.lanes, self._seq)
        self.lanes.send(now)
        if full:
            self._record(now)
        if self.outages() != self._outages:
            # The broker that comes back may be a new one, without the topics: a producer that
            # still knew them was seen to have records acknowledged there and never stored.
            self.lanes.broken = "Kafka went away; every topic is checked before anything is sent again"
        if self.lanes.broken:
            repeated.error("replacing the Kafka producer (%s); unacknowledged events are sent again", self.lanes.broken)
            self.reset()

    def _record(self, now: float) -> None:
        """Watch the lanes, record how far Kafka acknowledged, count, tidy, sync, and set the gauges."""
        self.lanes.watch(now, self.blocked, self.answered())
        advance(self.cursors, self.log)
        self.log.count()
        if now >= self._tidy_at:
            self._tidy_at = now + 1.0
            self.log.tidy()
        self._chores(now)
        metrics.PENDING.set(self.lanes.held)
        self.backlog = sum(c.backlog() for c in self.cursors)  # read by tests and the drain command
        metrics.BACKLOG_BYTES.set(self.backlog)
        oldest = min((c.unsettled[0].record.accepted_at for c in self.cursors if c.unsettled), default=0.0)
        metrics.OLDEST_SECONDS.set(time.time() - oldest if oldest else 0.0)
        self.passes += 1

    def _chores(self, now: float) -> None:
        """Let go of an idle segment, sync the log when due, and flush this worker's counts."""
        self.log.let_go_if_idle()
        if self.fsync_s and now >= self._sync_at:
            self._sync_at = now + self.fsync_s
            self.log.sync()
        metrics.flush()

    def finish(self, deadline: float) -> None:
        """At exit: go on delivering until the log is empty or ``deadline``; the rest stays in the log."""
        self.step()
        # The sender process waits for the workers to let go of their segments (at exit): their last events go too.
        while (self.backlog or self.held or self.woken and any(not c.segment.locked for c in self.cursors)) \
                and time.monotonic() < deadline:
            time.sleep(min(self.interval_s, max(0.0, deadline - time.monotonic())))
            self.step()
        self.lanes.settle(time.monotonic())
        advance(self.cursors, self.log)
        self.log.sync()
        self.lanes.close()
        for cursor in self.cursors:
            self.log.remove(cursor.segment, delete=cursor.finished)
        self.election.resign()

    def last_run(self) -> float:
        """When sending on this host last made progress: this thread's last pass, or while another
        process is the host's sender, the older of this thread's beat and that one's (for a worker
        beside the sender process, from the worker's start until that process first ran)."""
        if self.host and not self.elected:
            host = self.host_beat if self.candidate else max(self.host_beat, self.began)
            if host:
                return min(self.beat, host)
        return self.beat
