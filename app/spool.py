"""Events kept on this host's disk until Kafka takes them: JSON lines, one file per writer.

Each worker appends to its own file, which it holds under an exclusive ``flock`` while it
writes; ``rotate`` closes it, releasing the lock. A file nobody holds (rotated, or left by
a worker that is gone, even one killed with SIGKILL: the kernel drops its locks) can be
claimed by any worker for replay; the claim holds the same lock, so a file is never
replayed by two workers at once. File names sort in order of creation.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import orjson

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"


class Record(NamedTuple):
    """One Kafka record, as it will be sent, and when it was accepted (not spooled)."""

    event_id: str
    topic: str
    key: bytes
    value: bytes
    accepted_at: float = 0.0


class SpoolFull(Exception):
    """The spool holds its configured maximum of bytes."""


def encode(records: list[Record]) -> bytes:
    """Records as JSON lines: ``{"event_id", "topic", "key", "value": <the event>}``."""
    return b"".join(
        orjson.dumps({"event_id": r.event_id, "topic": r.topic, "key": r.key.decode(),
                      "value": orjson.Fragment(r.value)}) + b"\n"
        for r in records
    )


def decode(line: bytes) -> Record:
    """One JSON line back into a record."""
    d = orjson.loads(line)
    return Record(d["event_id"], d["topic"], d["key"].encode(), orjson.dumps(d["value"]))


class Claim:
    """A spool file held for replay: read its records, then ``done`` deletes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    def chunks(self, size: int) -> Iterator[list[Record]]:
        """The file's records in order, ``size`` at a time; a torn or broken line is skipped."""
        chunk: list[Record] = []
        with os.fdopen(os.dup(self.fd), "rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    chunk.append(decode(line))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    log.error("spool %s line %d skipped, unreadable: %r", self.path.name, number, exc)
                    continue
                if len(chunk) == size:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    def done(self) -> None:
        """Every record reached Kafka: delete the file."""
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Let go of the file (after ``done``, or to retry later)."""
        os.close(self.fd)


class Spool:
    """The spool directory, as one worker process sees it."""

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._bytes = 0  # all spool files, as last counted plus what this process wrote since

    def check(self) -> str | None:
        """Why the spool cannot be written, or None when it can."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            return f"{self.dir}: {exc.strerror or exc}"
        return None

    def append(self, records: list[Record]) -> None:
        """Write records to this process's file; raises ``SpoolFull`` or ``OSError``."""
        data = encode(records)
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                raise SpoolFull(f"the spool holds {self._bytes} bytes, its maximum")
            if self._fd is None:
                self._fd = self._create()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._bytes += len(data)

    def _create(self) -> int:
        # Locked before it gets a name a claimer looks for, so no claimer sees it unlocked.
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        tmp = self.dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, self.dir / name)
        return fd

    def rotate(self) -> None:
        """Close this process's file (if any) so that it can be replayed."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    @property
    def writing(self) -> bool:
        """True while this process has a file open (events spooled since the last rotate)."""
        return self._fd is not None

    def files(self) -> list[Path]:
        """Every spool file, oldest first; also recounts the spool's bytes."""
        try:
            paths = sorted(p for p in self.dir.iterdir() if p.name.endswith(SUFFIX) and p.name[0] != ".")
        except OSError:
            return []
        total = 0
        for p in paths:
            with contextlib.suppress(OSError):  # replayed and deleted meanwhile
                total += p.stat().st_size
        with self._lock:
            self._bytes = total
        return paths

    def own_files(self) -> bool:
        """True while a file written by this process is still on disk."""
        mine = f"-{os.getpid()}{SUFFIX}"
        return any(p.name.endswith(mine) for p in self.files())

    def claim(self, path: Path) -> Claim | None:
        """Hold ``path`` for replay, or None when a writer or another replayer holds it."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink == 0:  # replayed and deleted while we waited
                raise BlockingIOError
        except BlockingIOError:
            os.close(fd)
            return None
        return Claim(path, fd)

