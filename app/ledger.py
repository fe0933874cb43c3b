"""What the sender holds of the log: per segment, how far it has read and what Kafka has not
acknowledged yet; per topic (a lane), the records waiting for Kafka and those in flight.

Everything here is owned by the sender thread.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from typing import TYPE_CHECKING

from .logs import Throttle
from .reader import writes_in
from .segment import Record, Segment

if TYPE_CHECKING:
    from .lanes import Lanes
    from .log import Log

log = logging.getLogger(__name__)
repeated = Throttle(log)  # errors that come back every pass while a fault lasts: once a minute


class Entry:
    """One record the sender has read, until Kafka acknowledges it or it is dead-lettered."""

    __slots__ = ("seq", "cursor", "offset", "record", "settled", "sent_at")

    def __init__(self, seq: int, cursor: Cursor, offset: int, record: Record) -> None:
        self.seq = seq  # read order: a lane sends in this order
        self.cursor = cursor
        self.offset = offset
        self.record = record
        self.settled = False
        self.sent_at = 0.0  # monotonic time of the send in flight, 0 while waiting


class Cursor:
    """The sender's place in one segment."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        self.position = min(segment.acked(), segment.size)  # next offset to read
        self.recorded = self.position  # the acknowledged offset last written to the ack file
        self.unsettled: deque[Entry] = deque()  # in read order

    def mark(self) -> int:
        """The offset before which every record is settled (delivered or dead-lettered)."""
        while self.unsettled and self.unsettled[0].settled:
            self.unsettled.popleft()
        return self.unsettled[0].offset if self.unsettled else self.position

    def record_mark(self) -> None:
        """Write the acknowledged offset beside the segment, when it moved: after a crash, the
        next sender resumes there (what was acknowledged since is sent again)."""
        mark = self.mark()
        if mark == self.recorded:
            return
        fd = os.open(self.segment.ack_path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            os.pwrite(fd, b"%020d" % mark, 0)  # fixed width, in place: never a half-written number
        finally:
            os.close(fd)
        self.recorded = mark

    @property
    def finished(self) -> bool:
        """No more records will come and every one is settled: the segment can go."""
        return self.segment.sealed and self.mark() >= self.segment.size

    def backlog(self) -> int:
        """Bytes of the segment not yet acknowledged."""
        return self.segment.size - self.mark()


def advance(cursors: list[Cursor], wal: Log) -> None:
    """Record how far each segment is acknowledged; let go of the finished ones."""
    for cursor in list(cursors):
        try:
            cursor.record_mark()
        except OSError as exc:
            repeated.error("ack position of %s not recorded: %r", cursor.segment.path.name, exc)
        segment = cursor.segment
        if not segment.sealed and not segment.empty and cursor.mark() == segment.size:
            wal.seal(segment, segment.size)  # all acknowledged: an idle log leaves no file behind
        if cursor.finished:
            cursors.remove(cursor)
            wal.remove(segment, delete=True)


class Lane:
    """One topic's records: waiting to be sent, in order, and in flight."""

    def __init__(self) -> None:
        self.waiting: deque[Entry] = deque()
        self.flight: deque[Entry] = deque()  # sent, in send order; settled ones are dropped lazily
        self.in_flight = 0
        self.attempts = 0  # failures since the last delivery
        self.failing_since = 0.0  # monotonic time of the first failure since the last delivery
        self.error = ""
        self.retry_at = 0.0
        self.returned = False  # failed records came back: sort ``waiting`` before sending again

    def oldest_send(self) -> float:
        """When the oldest record in flight was sent (0 when none is)."""
        self._prune()
        return self.flight[0].sent_at if self.flight else 0.0

    def _prune(self) -> None:
        while self.flight and (self.flight[0].settled or not self.flight[0].sent_at):
            self.flight.popleft()

    def failed(self, error: str, backoff: float, now: float) -> None:
        """Note a failure at ``now`` (the sender's pass): retry after ``backoff`` seconds, growing
        with each round of failures, up to 5 s."""
        if not self.failing_since:
            self.failing_since = now
        self.error = error
        if now >= self.retry_at:  # one round counts once, however many records failed in it
            self.attempts += 1
            self.retry_at = now + min(backoff * 2 ** min(self.attempts, 10), 5.0)

    def delivered(self) -> None:
        """Kafka took one of its records: the lane is healthy again."""
        self.failing_since = 0.0
        self.attempts = 0

    def back(self, entry: Entry) -> None:
        """A record Kafka failed goes back to wait for its turn again."""
        entry.sent_at = 0.0
        self.waiting.append(entry)
        self.returned = True

    def ordered(self) -> deque[Entry]:
        """The waiting records in read order."""
        if self.returned:
            self.waiting = deque(sorted(self.waiting, key=lambda e: e.seq))
            self.returned = False
        return self.waiting


def read(cursors: list[Cursor], lanes: Lanes, seq: int) -> tuple[int, bool]:
    """Read each cursor's segment on from its position into ``lanes``, a whole write at a time,
    until the lanes' memory bound: the last sequence number given, and whether the bound stopped it."""
    for cursor in cursors:
        if cursor.position < cursor.segment.size and lanes.full:
            return seq, True  # the rest waits on disk
        try:
            for write in writes_in(cursor.segment, cursor.position):
                write.report(cursor.segment.path.name)
                for record in write.records:  # a write's records go together: all or none is read
                    seq += 1
                    entry = Entry(seq, cursor, write.offset, record)
                    cursor.unsettled.append(entry)
                    lanes.add(entry)
                cursor.position = write.end
                if lanes.full:
                    return seq, True
        except OSError as exc:  # an I/O error: read again next pass, from where it stopped
            repeated.error("segment %s not read at %d (%r)", cursor.segment.path.name, cursor.position, exc)
    return seq, False
