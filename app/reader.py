"""Reading a segment: its whole writes in order, a damaged record skipped alone, a torn tail told apart.

A write is one request's records, framed so that a reader takes all of them or none
(``segment.py``). What the reader finds is a ``Write``: records to send, or bytes it skipped,
and whether those held events the collector had answered 204 for (damaged: ``lost``) or not
(the unfinished write a crash or a failed cut left at the end of a sealed segment: ``torn``).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

from . import metrics
from .logs import plural
from .segment import FRAME, MORE, Record, Segment, decode

log = logging.getLogger(__name__)


class Write(NamedTuple):
    """What the reader found from ``offset`` to ``end``."""

    offset: int
    end: int
    records: list[Record]
    lost: int = 0  # damaged records skipped: each had been answered 204, as far as the reader knows
    torn: bool = False  # an unfinished write at the end of a sealed segment: never answered 204

    def report(self, segment: str) -> None:
        """Log what was skipped, and count the events lost (a torn write's were never answered 204)."""
        if self.torn:
            log.warning("segment %s: a write never finished (a crash or a full disk mid-write), %s at offset "
                        "%d; skipped, nothing in it was answered 204", segment, plural(self.end - self.offset, "byte"),
                        self.offset)
        elif self.lost:
            log.error("segment %s: %s between offsets %d and %d skipped; reading goes on after it",
                      segment, plural(self.lost, "damaged record"), self.offset, self.end)
            metrics.LOST.inc(self.lost)


class Frames:
    """The frames of one segment, read through a buffer of ``chunk`` bytes or more."""

    def __init__(self, segment: Segment, chunk: int = 1 << 20) -> None:
        self.segment = segment
        self.chunk = chunk
        self.base = 0
        self.data = b""

    def _have(self, offset: int, length: int) -> bool:
        """Whether ``length`` bytes from ``offset`` are written; they are in the buffer if so."""
        if offset + length > self.segment.size:
            return False
        if offset < self.base or offset + length > self.base + len(self.data):
            self.base, self.data = offset, self.segment.read(offset, max(self.chunk, length))
        return offset + length <= self.base + len(self.data)

    def at(self, offset: int) -> tuple[Record | None, bool, int]:
        """The frame at ``offset``, as ``decode`` gives it (``end`` 0: not all written)."""
        if not self._have(offset, FRAME.size):
            return None, False, 0
        word = FRAME.unpack_from(self.data, offset - self.base)[1]
        if not self._have(offset, FRAME.size + (word if self.segment.v1 else word & ~MORE)):
            return None, False, 0
        record, more, end = decode(self.data, offset - self.base, self.segment.v1)
        return record, more, end and end + self.base

    def resync(self, offset: int, skip: int) -> int | None:
        """The offset of the first whole, valid frame from ``skip`` (the end the damaged frame at
        ``offset`` gives itself), else from ``offset + 1`` on; None when none is written."""
        if skip and self.at(skip)[0] is not None:
            return skip
        for candidate in range(offset + 1, self.segment.size - FRAME.size + 1):
            if self.at(candidate)[0] is not None:
                return candidate
        return None


def writes_in(segment: Segment, offset: int) -> Iterator[Write]:
    """Every write from ``offset`` to what is written whole. In a segment still written to, the
    reader stops before a write not all there yet, or damage it cannot see past yet."""
    frames = Frames(segment)
    start, group, position = offset, [], offset
    while position < segment.size:
        record, more, end = frames.at(position)
        if record is not None:
            group.append(record)
            position = end
            if not more:
                yield Write(start, end, group)
                start, group = end, []
            continue
        if not end and not segment.sealed:
            return  # not written whole yet
        resume = frames.resync(position, end)
        if resume is None and not segment.sealed:
            return  # damaged, and what follows is not written yet: decided on a later read
        if resume is None and not end:
            yield Write(start, segment.size, [], torn=True)  # the group was never finished either
            return
        yield Write(start, resume or segment.size, group, lost=1)  # the records before it stand
        start, group, position = resume or segment.size, [], resume or segment.size
    if group and segment.sealed:
        yield Write(start, segment.size, [], torn=True)  # its last record never came


def records_in(segment: Segment, offset: int | None = None) -> Iterator[Record]:
    """Every record of the whole writes from ``offset`` (default: the first)."""
    for write in writes_in(segment, segment.start if offset is None else offset):
        yield from write.records
