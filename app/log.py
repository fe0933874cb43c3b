"""The write-ahead log: every accepted event is appended here before its 204.

Each worker appends to its own segment file, ``COLLECTOR_SPOOL_DIR/<time_ns>-<pid>.log``,
holding it under an exclusive ``flock`` from creation until the segment is deleted, so a
segment whose lock is free belongs to a process that is gone: any process may adopt it.
A record is framed as ``crc32c, length`` (little-endian u32 each) then the body
``accepted_at (f64), topic length (u16), key length (u16), topic, key, value``; the checksum
covers the body, so a torn or damaged record is found and never sent. How far Kafka has
acknowledged a segment is kept beside it in ``<segment>.ack`` (written by the sender).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

log = logging.getLogger(__name__)
FRAME = struct.Struct("<II")
BODY = struct.Struct("<dHH")
SUFFIX = ".log"


class Record(NamedTuple):
    """One Kafka record as the log holds it, and when the collector accepted it (Unix time)."""

    topic: str
    key: bytes
    value: bytes
    accepted_at: float = 0.0


class LogFull(Exception):
    """The log holds its configured maximum of bytes."""


def encode(record: Record) -> bytes:
    """One framed record."""
    topic = record.topic.encode()
    body = BODY.pack(record.accepted_at, len(topic), len(record.key)) + topic + record.key + record.value
    return FRAME.pack(crc32c(body), len(body)) + body


def decode(data: bytes | memoryview, offset: int) -> tuple[Record | None, int]:
    """The record at ``offset`` and the offset after it; ``(None, offset)`` when the record is
    incomplete, ``(None, -1)`` when it is damaged."""
    if len(data) - offset < FRAME.size:
        return None, offset
    crc, length = FRAME.unpack_from(data, offset)
    start, end = offset + FRAME.size, offset + FRAME.size + length
    if len(data) < end:
        return None, offset
    body = bytes(data[start:end])
    if length < BODY.size or crc32c(body) != crc:
        return None, -1
    accepted_at, topic_len, key_len = BODY.unpack_from(body)
    topic_end = BODY.size + topic_len
    key_end = topic_end + key_len
    return Record(body[BODY.size:topic_end].decode(), body[topic_end:key_end], body[key_end:], accepted_at), end


class Segment:
    """One segment file, open and locked by this process until it is deleted."""

    def __init__(self, path: Path, fd: int, size: int, sealed: bool, locked: bool = True) -> None:
        self.path = path
        self.fd = fd
        self.size = size  # bytes of whole records: written only by the Log, under its lock
        self.sealed = sealed  # no more appends: a finished segment or one adopted from a gone process
        self.locked = locked  # this process holds its lock (else another writer does: one sender per host)
        self.created = time.monotonic()
        self.synced = size  # bytes known to be on disk: written by the sender thread only

    @property
    def ack_path(self) -> Path:
        return self.path.with_name(self.path.name + ".ack")

    def read(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of whole or partial records from ``offset``."""
        return os.pread(self.fd, min(limit, self.size - offset), offset)

    def acked(self) -> int:
        """The offset up to which Kafka acknowledged every record, as last recorded (0 when never)."""
        try:
            return int(self.ack_path.read_bytes() or 0)
        except (OSError, ValueError):
            return 0


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
        # Locked before it gets the name adopters look for, so none sees it unlocked.
        self._seal()
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        tmp = self.dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, self.dir / name)
        self._current = Segment(self.dir / name, fd, 0, sealed=False)
        if not self.shared:
            self.segments.append(self._current)
        return self._current

    def sync(self) -> None:
        """fsync what was appended since the last call (the bound on what a host crash takes).
        Called by the sender thread, which alone closes the segments it reads; with ``shared``,
        the writer closes its own when it rolls them, so that one is synced under the lock."""
        for segment in self.owned():
            _sync(segment)
        if self.shared:
            with self._lock:
                if self._current is not None:
                    _sync(self._current)

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
        try:
            paths = sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX) and p.name[0] != ".")
        except OSError:
            return []
        total = 0
        for p in paths:
            with contextlib.suppress(OSError):  # deleted meanwhile
                total += p.stat().st_size
        with self._lock:
            self.disk_bytes = total
        return paths

    def adopt(self, follow: bool = False) -> None:
        """Take every segment whose owner is gone (its lock is free). With ``follow`` (the host's
        sender), also read the segments that other writers hold, and take them once they let go."""
        known = {s.path: s for s in self.owned()}
        for segment in known.values():
            if not segment.locked:
                locked = _try_lock(segment.fd)  # before the size: once locked, the writer is done
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
            locked = _try_lock(fd)
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


def _sync(segment: Segment) -> None:
    size = segment.size
    if segment.synced < size:
        try:
            os.fdatasync(segment.fd)
        except OSError as exc:
            log.error("fsync of %s failed: %r", segment.path.name, exc)
            return
        segment.synced = size


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def records_in(segment: Segment, offset: int, chunk: int = 1 << 20) -> Iterator[tuple[int, Record | None, int]]:
    """``(offset, record, next offset)`` from ``offset`` to the end of what is written; a damaged
    record comes as ``(offset, None, -1)`` and ends the iteration."""
    while offset < segment.size:
        data = segment.read(offset, chunk)
        position = 0
        while True:
            record, after = decode(data, position)
            if after == -1:
                yield offset + position, None, -1
                return
            if record is None:
                break
            yield offset + position, record, offset + after
            position = after
        if position == 0:
            if len(data) < chunk:
                return  # an incomplete record at the end: not written whole (yet)
            chunk *= 2
        offset += position
