"""One sender per host (``COLLECTOR_SENDER=host``): the worker that holds the ``flock`` of
``sender.lock`` in the log directory. The kernel frees the lock when that worker dies, however
it dies, and the next worker to ask takes it. The one elected writes into that file when it last
ran, so that every worker's readiness can tell a host whose sender is stuck."""
from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path

BEAT = struct.Struct("<d")  # time.monotonic(): one clock for every process of the host


class Election:
    """This process's candidacy; used by its sender thread only."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "sender.lock"
        self.fd: int | None = None

    def won(self) -> bool:
        """Whether this process holds the lock now (asking for it, without waiting)."""
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def publish(self, beat: float) -> None:
        """As the elected one: note that the host's sender ran at ``beat``."""
        if self.fd is not None:
            with contextlib.suppress(OSError):  # a disk that refuses it shows as a stale beat
                os.pwrite(self.fd, BEAT.pack(beat), 0)

    def last_beat(self) -> float:
        """When the host's sender last ran, as it noted (0.0: never)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(BEAT.size)
        except OSError:
            return 0.0
        return BEAT.unpack(data)[0] if len(data) == BEAT.size else 0.0

    def resign(self) -> None:
        """Let go of the lock, if held: the next worker takes over."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
