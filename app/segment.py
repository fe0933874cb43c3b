"""Segment files of the write-ahead log: how a record is framed, and how a segment is read.

A record is framed as ``crc32c, length`` (little-endian u32 each) then the body
``accepted_at (f64), topic length (u16), key length (u16), topic, key, value``; the checksum
covers the body, so a torn or damaged record is found and never sent. How far Kafka has
acknowledged a segment is kept beside it in ``<segment>.ack`` (written by the sender).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
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

    @classmethod
    def create(cls, directory: Path) -> Segment:
        """A new, empty segment, appended to only (``O_APPEND``); locked before it gets the name
        that adopters look for, so that none sees it unlocked."""
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, directory / name)
        return cls(directory / name, fd, 0, sealed=False)

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


def listed(directory: Path) -> tuple[list[Path], int]:
    """Every segment in ``directory``, oldest first, and their bytes in all."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.name[0] != ".")
    except OSError:
        return [], 0
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):  # deleted meanwhile
            total += p.stat().st_size
    return paths, total


def sync(segment: Segment) -> None:
    size = segment.size
    if segment.synced < size:
        try:
            os.fdatasync(segment.fd)
        except OSError as exc:
            log.error("fsync of %s failed: %r", segment.path.name, exc)
            return
        segment.synced = size


def try_lock(fd: int) -> bool:
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
