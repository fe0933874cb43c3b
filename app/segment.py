"""Segment files of the write-ahead log: how a write is framed, how a segment is named and read.

A segment starts with ``HEADER``. Each record is framed as ``crc32c, word`` (little-endian u32
each) then the body ``accepted_at (f64), topic length (u16), key length (u16), topic, key,
value``; ``word`` is the body's length, its top bit set when another record of the same write
follows, and the checksum covers the word and the body. So a reader takes a write (one request's
events) whole or not at all, and a damaged record is found, skipped alone, and the reader goes
on at the next whole frame. A segment without ``HEADER`` is of the first format (one record a
write, the checksum over the body only), still read.

Segments are named by a number the directory's ``sequence`` file hands out, above every segment
there and every number given before: never from a clock, and never one a segment had.
How far Kafka has acknowledged a segment is kept beside it in ``<segment>.ack`` (the sender's).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import struct
import time
from pathlib import Path
from typing import NamedTuple

from crc32c import crc32c

from .logs import Throttle

log = logging.getLogger(__name__)
repeated = Throttle(log)  # errors that come back every pass while a fault lasts: once a minute
HEADER = b"\x93WAL\r\n\x00\x02"
FRAME = struct.Struct("<II")
BODY = struct.Struct("<dHH")
MORE = 1 << 31
SUFFIX = ".wal"  # the first format's was .log: a collector of that version leaves these alone
SEQUENCE = "sequence"
NAME = re.compile(r"(\d+)-(\d+)\.(wal|log)")  # <number>-<writer's pid>.wal; the first format's <time_ns>-<pid>.log


class Record(NamedTuple):
    """One Kafka record as the log holds it, and when the collector accepted it (Unix time)."""

    topic: str
    key: bytes
    value: bytes
    accepted_at: float = 0.0


def encode(record: Record, more: bool = False) -> bytes:
    """One framed record; ``more``: another record of the same write follows it."""
    topic = record.topic.encode()
    body = BODY.pack(record.accepted_at, len(topic), len(record.key)) + topic + record.key + record.value
    word = struct.pack("<I", len(body) | (MORE if more else 0))
    return struct.pack("<I", crc32c(body, crc32c(word))) + word + body


def encode_write(records: list[Record]) -> bytes:
    """The frames of one write: read all or none."""
    return b"".join(encode(r, more=i < len(records) - 1) for i, r in enumerate(records))


def decode(data: bytes | memoryview, offset: int, v1: bool = False) -> tuple[Record | None, bool, int]:
    """The frame at ``offset``: ``(record, more, end)``; ``end`` is 0 when the frame is not all in
    ``data``, and ``record`` None when it is damaged."""
    if len(data) - offset < FRAME.size:
        return None, False, 0
    crc, word = FRAME.unpack_from(data, offset)
    length = word if v1 else word & ~MORE
    start = offset + FRAME.size
    end = start + length
    if len(data) < end:
        return None, False, 0
    body = bytes(data[start:end])
    if length < BODY.size or crc != (crc32c(body) if v1 else crc32c(body, crc32c(data[offset + 4:start]))):
        return None, False, end
    accepted_at, topic_len, key_len = BODY.unpack_from(body)
    topic_end = BODY.size + topic_len
    key_end = topic_end + key_len
    try:
        topic = body[BODY.size:topic_end].decode()
    except UnicodeDecodeError:
        return None, False, end
    return Record(topic, body[topic_end:key_end], body[key_end:], accepted_at), not v1 and word & MORE != 0, end


def number(path: Path) -> int:
    """A segment's place in the directory's sequence (the first format's names: a time in ns)."""
    match = NAME.fullmatch(path.name)
    return int(match[1]) if match else 0


def writer(path: Path) -> int:
    """The pid of the process that wrote the segment at ``path``."""
    match = NAME.fullmatch(path.name)
    return int(match[2]) if match else 0


class Segment:
    """One segment file, open in this process until it lets go of it."""

    def __init__(self, path: Path, fd: int, size: int, sealed: bool, locked: bool = True) -> None:
        self.path = path
        self.fd = fd
        self.size = size  # bytes of whole writes: written only by the Log, under its lock
        self.sealed = sealed  # no more appends: a finished segment or one adopted from a gone process
        self.locked = locked  # this process holds its lock (else another writer does: one sender per host)
        self.synced = size  # bytes known to be on disk: written by the sender thread only
        self.v1 = os.pread(fd, len(HEADER), 0) != HEADER if size else False
        self.start = 0 if self.v1 else len(HEADER)  # the first record's offset

    @classmethod
    def create(cls, directory: Path) -> Segment:
        """A new segment, appended to only (``O_APPEND``): locked and headed before it gets its
        name, so that no adopter sees it unlocked, and never under a name that exists."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{next_number(directory):020d}-{os.getpid()}{SUFFIX}"
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.write(fd, HEADER) != len(HEADER):
                raise OSError(errno.ENOSPC, "short write of a segment's header")
            os.link(tmp, directory / name)  # EEXIST rather than replacing a segment
        except BaseException:
            os.close(fd)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return cls(directory / name, fd, len(HEADER), sealed=False)

    @property
    def ack_path(self) -> Path:
        return self.path.with_name(self.path.name + ".ack")

    @property
    def empty(self) -> bool:
        return self.size <= self.start

    def read(self, offset: int, limit: int) -> bytes:
        """Up to ``limit`` bytes of whole or partial records from ``offset``."""
        return os.pread(self.fd, min(limit, self.size - offset), offset)

    def acked(self) -> int:
        """The offset up to which Kafka acknowledged every record, as last recorded (its first
        record's when never)."""
        return max(self.start, acked_offset(self.path))


def next_number(directory: Path) -> int:
    """The next segment's number: above every number handed out before (kept in ``sequence``,
    under its ``flock``) and every segment in ``directory``."""
    fd = os.open(directory / SEQUENCE, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = 0
        with contextlib.suppress(ValueError):  # damaged: the segments' own numbers still bound it
            last = int(os.pread(fd, 20, 0) or 0)
        given = max(last, max(map(number, segments(directory)), default=0)) + 1
        os.pwrite(fd, b"%020d" % given, 0)  # fixed width, in place
        return given
    finally:
        os.close(fd)


def segments(directory: Path) -> list[Path]:
    """Every segment in ``directory``, in the order of the sequence; raises ``OSError``."""
    return sorted((p for p in directory.iterdir() if NAME.fullmatch(p.name)), key=number)


def acked_offset(path: Path) -> int:
    """The acknowledged offset recorded beside the segment at ``path`` (0 when none)."""
    try:
        return int(path.with_name(path.name + ".ack").read_bytes() or 0)
    except (OSError, ValueError):
        return 0


def unacknowledged(directory: Path) -> int:
    """Bytes of the segments in ``directory`` past their acknowledged offsets; raises ``OSError``."""
    total = 0
    for path in segments(directory):
        try:
            size = path.stat().st_size
        except FileNotFoundError:  # delivered and deleted meanwhile
            continue
        total += size - min(size, acked_offset(path))
    return total


def leftover(path: Path) -> bool:
    """Whether ``path`` is what a crash left behind: an ack file whose segment is gone, or a
    segment's temporary file no process holds (unlocked, and a minute old)."""
    if path.name.endswith((".wal.ack", ".log.ack")):
        return not path.with_name(path.name[:-4]).exists()
    if not (path.name.startswith(".") and path.name.endswith(".wal.tmp")):
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return try_lock(fd) and time.time() - os.fstat(fd).st_mtime > 60
    finally:
        os.close(fd)


def writable(directory: Path) -> str | None:
    """Why no segment can be written in ``directory``, or None when one can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{directory}: {exc.strerror or exc}"
    return None


def sync(segment: Segment) -> None:
    size = segment.size
    if segment.synced < size:
        try:
            os.fdatasync(segment.fd)
        except OSError as exc:
            repeated.error("fsync of %s failed: %r", segment.path.name, exc)
            return
        segment.synced = size


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
