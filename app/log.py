"""The write-ahead log: every accepted event is appended here before its 204.

Each worker appends to its own segment file, ``COLLECTOR_SPOOL_DIR/<number>-<pid>.wal``
(``segment.py``), holding it under an exclusive ``flock`` from creation until it lets go of it,
so a segment whose lock is free has no writer: any sender may take it.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from pathlib import Path

from . import deadletter
from .logs import Throttle
from .segment import Record, Segment, encode_write, leftover, segments, sync, try_lock, unacknowledged, writer

log = logging.getLogger(__name__)
repeated = Throttle(log)  # errors that come back every pass while a fault lasts: once a minute


class LogFull(Exception):
    """The log holds its configured maximum of bytes."""


class Writer:
    """This process's appends: the segment it writes to, rolled, let go of, and the limit.

    ``_lock`` guards ``segments``, ``_current``, ``held`` and every ``Segment.size``: request
    threads append, the sender thread counts, adopts, seals and removes. With ``shared`` (one
    sender per host, COLLECTOR_SENDER=host) the writer keeps its segments to itself, lets go of
    each when it rolls, and the elected sender, in any worker, follows them all.
    """

    ROLL_S = 10.0  # with ``shared``: let go of a segment after this, so that it can be deleted ...
    IDLE_S = 1.0  # ... or after this long with nothing appended; each time only once the last is gone

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int, shared: bool = False) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.shared = shared
        self.held = 0  # what the spool holds not yet delivered: as last counted, plus this process's appends since
        self.segments: list[Segment] = []
        self._current: Segment | None = None
        self._let_go: Path | None = None  # the segment this writer last let go of
        self._created_at = self._appended_at = self._check_at = 0.0
        self._lock = threading.Lock()

    def append(self, records: list[Record], sync: bool = False) -> None:
        """Write ``records``, all or none, and fsync them when ``sync``; raises ``LogFull`` or
        ``OSError``. A failed or short write is cut off again, so the records around it stay whole."""
        data = encode_write(records)
        with self._lock:
            if self.held + len(data) > self.max_bytes:
                raise LogFull(f"the log holds {self.held} bytes not yet delivered, its maximum")
            now = time.monotonic()
            segment = self._current
            if segment is None or not segment.empty and (segment.size + len(data) > self.segment_bytes
                                                          or self._due(now - self._created_at, self.ROLL_S)):
                segment = self._create()
            try:
                written = os.write(segment.fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                if sync:
                    os.fdatasync(segment.fd)
            except OSError:
                # Cut the part written off; if even that fails, the unfinished write is never read
                # (reader.py). Either way the next write goes to a new segment, and this one can be
                # deleted once acknowledged: on a full disk, that is what makes room.
                with contextlib.suppress(OSError):
                    os.ftruncate(segment.fd, segment.size)
                self._seal()
                raise
            segment.size += written
            self.held += written
            self._appended_at = now

    def _due(self, age: float, limit: float) -> bool:
        """With ``shared``: whether to let go of the current segment, ``age`` seconds old (or
        idle) against ``limit``: only once the one let go of before is deleted (asked at most once
        per IDLE_S), so that an outage makes the segments bigger, not more."""
        if not self.shared or age <= limit or time.monotonic() < self._check_at:
            return False
        self._check_at = time.monotonic() + self.IDLE_S
        return self._let_go is None or not self._let_go.exists()

    def _seal(self) -> None:
        segment, self._current = self._current, None
        if segment is None:
            return
        segment.sealed = True
        self._let_go = segment.path
        if self.shared:  # the host's sender takes it from here
            with contextlib.suppress(OSError):
                os.fdatasync(segment.fd)
            os.close(segment.fd)

    def _create(self) -> Segment:
        self._seal()
        self._current = Segment.create(self.dir)
        self._created_at = time.monotonic()
        if not self.shared:
            self.segments.append(self._current)
        return self._current

    def let_go_if_idle(self) -> None:
        """With ``shared``: let go of the segment being written once nothing came for ``IDLE_S``,
        so that the host's sender can delete it once acknowledged (called by the sender thread)."""
        with self._lock:
            if self._current is not None and self._due(time.monotonic() - self._appended_at, self.IDLE_S):
                self._seal()

    def seal(self, segment: Segment | None = None, size: int = -1) -> None:
        """Stop appending to the current segment (at exit), or only if it is ``segment`` and still
        ``size`` bytes long (nothing was appended since the sender found all of it acknowledged)."""
        with self._lock:
            if segment is None or segment is self._current and segment.size == size:
                self._seal()

    def counted(self, held: int) -> None:
        """Take ``held`` as what the spool holds not yet delivered, as another process counted it."""
        with self._lock:
            self.held = held

    def count(self) -> None:
        """Count again what the spool holds not yet delivered, every process's writes included
        (by the sender thread, every pass): the figure the maximum is about."""
        try:  # every segment past its acknowledged offset, and the dead letters
            total = unacknowledged(self.dir) + deadletter.held_bytes(self.dir) if self.dir.exists() else 0
        except OSError as exc:  # an error is not an empty log: the last figure stands
            repeated.error("the log's directory could not be counted: %r", exc)
            return
        with self._lock:
            self.held = total


class Log(Writer):
    """This process's segments: the one it appends to (``Writer``) and those its sender reads."""

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int, shared: bool = False) -> None:
        super().__init__(directory, max_bytes, segment_bytes, shared)
        self._undeleted: list[Segment] = []  # delivered, but the disk refused to delete them: the sender thread's

    def sync(self) -> None:
        """fsync what was appended since the last call (the bound on what a host crash takes).
        Called by the sender thread, which alone closes the segments it reads; with ``shared``,
        the writer closes its own when it rolls them, so that one is synced under the lock."""
        for segment in self.owned():
            sync(segment)
        if self.shared:
            with self._lock:
                if self._current is not None:
                    sync(self._current)

    def paths(self) -> list[Path]:
        """Every segment in the directory, in order."""
        return segments(self.dir)

    def adopt(self, follow: bool = False, listing: bool = True) -> None:
        """Take every segment whose owner is gone (its lock is free). With ``follow`` (the host's
        sender), also read the segments that other writers hold, and take them once they let go.
        Without ``listing`` (between the sender process's full passes), only new sizes are taken."""
        try:
            # Listed before the sizes of the segments followed are taken: a writer lets go of its segment
            # before it starts the next, so one listed here is never read ahead of the end of the one before.
            paths = segments(self.dir) if listing else []
        except OSError as exc:
            repeated.error("the log's directory could not be listed: %r", exc)
            return
        known = {s.path: s for s in self.owned() + self._undeleted}
        for segment in known.values():
            if not segment.locked:
                locked = try_lock(segment.fd)  # before the size: once locked, the writer is done
                with self._lock:
                    segment.size = os.fstat(segment.fd).st_size
                    segment.sealed = segment.locked = locked
        held: set[int] = set()  # writers still holding one of their segments: their later ones wait
        for path in paths:
            if path in known or not follow and writer(path) in held:
                continue  # a dying writer's locks go one by one: never its next segment before this one
            if (taken := self._open(path, follow)) is None:
                return
            if not taken:
                held.add(writer(path))

    def _open(self, path: Path, follow: bool) -> bool | None:
        """Adopt or follow the segment at ``path``: whether it was (False: its writer holds it, or its
        first page cannot be read now); None when no more files can be opened now."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        except OSError as exc:  # out of descriptors: the rest waits for a later pass
            repeated.error("segment %s not opened (%r); the rest waits", path.name, exc)
            return None
        try:
            locked = try_lock(fd)
            if not locked and not follow or os.fstat(fd).st_nlink == 0:  # held, or deleted meanwhile
                os.close(fd)
                return locked
            segment = Segment(path, fd, os.fstat(fd).st_size, sealed=locked, locked=locked)
        except OSError as exc:  # an I/O error on its first page: tried again next pass
            repeated.error("segment %s not read (%r); tried again", path.name, exc)
            os.close(fd)
            return False
        with self._lock:
            self.segments.append(segment)
        return True

    def remove(self, segment: Segment, delete: bool) -> None:
        """Let go of ``segment``: delete it (all acknowledged) or leave it for another process."""
        with self._lock:
            self.segments.remove(segment)
            if self._current is segment:
                self._current = None
        if delete and not self._delete(segment):
            self._undeleted.append(segment)  # kept open and locked, so that no sender sends it again
            return
        os.close(segment.fd)

    def _delete(self, segment: Segment) -> bool:
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as exc:
            repeated.error("segment %s is delivered but could not be deleted (%r); tried again", segment.path.name, exc)
            return False
        with contextlib.suppress(OSError):  # one left behind is swept
            segment.ack_path.unlink(missing_ok=True)
        return True

    def tidy(self) -> None:
        """Delete again the delivered segments the disk refused to delete, and what a crash left
        behind: an ack file whose segment is gone, a temporary file no process holds (the sender thread)."""
        for segment in list(self._undeleted):
            if self._delete(segment):
                self._undeleted.remove(segment)
                os.close(segment.fd)
        with contextlib.suppress(OSError):
            for path in filter(leftover, self.dir.iterdir()):
                path.unlink(missing_ok=True)

    def owned(self) -> list[Segment]:
        """A copy of this process's segments, oldest first."""
        with self._lock:
            return list(self.segments)
