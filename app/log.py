"""The write-ahead log: every accepted event is appended here before its 204.

Each worker appends to its own segment file, ``COLLECTOR_SPOOL_DIR/<time_ns>-<pid>.log``
(``segment.py``), holding it under an exclusive ``flock`` from creation until it lets go of it,
so a segment whose lock is free has no writer: any sender may take it.
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from pathlib import Path

from .segment import Record, Segment, encode, listed, sync, try_lock


class LogFull(Exception):
    """The log holds its configured maximum of bytes."""


class Log:
    """This process's segments: the one it appends to and those its sender reads.

    ``_lock`` guards ``segments``, ``_current``, ``disk_bytes`` and every ``Segment.size``:
    request threads append, the sender thread adopts, seals and removes. With ``shared`` (one
    sender per host, COLLECTOR_SENDER=host) the writer keeps its segments to itself, lets go of
    each when it rolls (every ``segment_bytes`` or ``ROLL_S``), and the elected sender, in any
    worker, follows them all.
    """

    ROLL_S = 10.0  # with ``shared``: the longest a segment is written to, so that it can be deleted
    IDLE_S = 1.0  # with ``shared``: a segment nothing was appended to for this long is let go of

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int, shared: bool = False) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.shared = shared
        self.disk_bytes = 0  # of every segment in the directory: recounted by ``paths``, grown by appends
        self.segments: list[Segment] = []
        self._current: Segment | None = None
        self._appended_at = 0.0
        self._lock = threading.Lock()

    def check(self) -> str | None:
        """Why the log cannot be written, or None when it can."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return f"{self.dir}: {exc.strerror or exc}"
        return None

    def append(self, records: list[Record], sync: bool = False) -> None:
        """Write ``records``, all or none, and fsync them when ``sync``; raises ``LogFull`` or
        ``OSError``. A failed or short write is cut off again, so the records around it stay whole."""
        data = b"".join(map(encode, records))
        with self._lock:
            if self.disk_bytes + len(data) > self.max_bytes:
                self._seal()  # so that the sender can delete it once acknowledged, and make room
                raise LogFull(f"the log holds {self.disk_bytes} bytes, its maximum")
            segment = self._current
            if segment is None or segment.size and (segment.size + len(data) > self.segment_bytes or self.shared
                                                    and time.monotonic() - segment.created > self.ROLL_S):
                segment = self._create()
            try:
                written = os.write(segment.fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
                if sync:
                    os.fdatasync(segment.fd)
            except OSError:
                # Cut the part written off; if even that fails, the tail stays torn, and a reader
                # stops at ``size``. Either way the next record goes to a new segment, and this
                # one can be deleted once acknowledged: on a full disk, that is what makes room.
                with contextlib.suppress(OSError):
                    os.ftruncate(segment.fd, segment.size)
                self._seal()
                raise
            segment.size += written
            self.disk_bytes += written
            self._appended_at = time.monotonic()

    def _seal(self) -> None:
        segment, self._current = self._current, None
        if segment is None:
            return
        segment.sealed = True
        if self.shared:  # the host's sender takes it from here
            with contextlib.suppress(OSError):
                os.fdatasync(segment.fd)
            os.close(segment.fd)

    def _create(self) -> Segment:
        self._seal()
        self._current = Segment.create(self.dir)
        if not self.shared:
            self.segments.append(self._current)
        return self._current

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

    def let_go_if_idle(self) -> None:
        """With ``shared``: let go of the segment being written once nothing came for ``IDLE_S``,
        so that the host's sender can delete it once acknowledged (called by the sender thread)."""
        with self._lock:
            if self.shared and self._current is not None and time.monotonic() - self._appended_at > self.IDLE_S:
                self._seal()

    def seal(self, segment: Segment | None = None, size: int = -1) -> None:
        """Stop appending to the current segment (at exit), or only if it is ``segment`` and still
        ``size`` bytes long (nothing was appended since the sender found all of it acknowledged)."""
        with self._lock:
            if segment is None or segment is self._current and segment.size == size:
                self._seal()

    def paths(self) -> list[Path]:
        """Every segment in the directory, oldest first; also recounts their bytes."""
        paths, total = listed(self.dir)
        with self._lock:
            self.disk_bytes = total
        return paths

    def adopt(self, follow: bool = False) -> None:
        """Take every segment whose owner is gone (its lock is free). With ``follow`` (the host's
        sender), also read the segments that other writers hold, and take them once they let go."""
        known = {s.path: s for s in self.owned()}
        for segment in known.values():
            if not segment.locked:
                locked = try_lock(segment.fd)  # before the size: once locked, the writer is done
                with self._lock:
                    segment.size = os.fstat(segment.fd).st_size
                    segment.sealed = segment.locked = locked
        for path in self.paths():
            if path in known:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            locked = try_lock(fd)
            if not locked and not follow or os.fstat(fd).st_nlink == 0:  # held, or deleted meanwhile
                os.close(fd)
                continue
            with self._lock:
                self.segments.append(Segment(path, fd, os.fstat(fd).st_size, sealed=locked, locked=locked))

    def remove(self, segment: Segment, delete: bool) -> None:
        """Let go of ``segment``: delete it (all acknowledged) or leave it for another process."""
        with self._lock:
            self.segments.remove(segment)
            if self._current is segment:
                self._current = None
            if delete:
                segment.path.unlink(missing_ok=True)
                segment.ack_path.unlink(missing_ok=True)
                self.disk_bytes -= segment.size
            os.close(segment.fd)

    def owned(self) -> list[Segment]:
        """A copy of this process's segments, oldest first."""
        with self._lock:
            return list(self.segments)
