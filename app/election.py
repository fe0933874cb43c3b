"""One sender per host (``COLLECTOR_SENDER=host``): the worker that holds the ``flock`` of
``sender.lock`` in the log directory. The kernel frees the lock when that worker dies, however
it dies, and the next worker to ask takes it. The one elected writes into that file when it last
ran and what the spool held then, so that every worker's readiness can tell a host whose sender
is stuck, and every worker holds to one count of the spool."""
from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from pathlib import Path

STATE = struct.Struct("<dq")  # time.monotonic() (one clock for every process of the host), bytes held


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

    def publish(self, beat: float, held: int) -> None:
        """As the elected one: note that the host's sender ran at ``beat`` and counted ``held``."""
        if self.fd is not None:
            with contextlib.suppress(OSError):  # a disk that refuses it shows as a stale beat
                os.pwrite(self.fd, STATE.pack(beat, held), 0)

    def state(self) -> tuple[float, int]:
        """When the host's sender last ran and what it counted then, as it noted ((0.0, 0): never)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(STATE.size)
        except OSError:
            return 0.0, 0
        return STATE.unpack(data) if len(data) == STATE.size else (0.0, 0)

    def resign(self) -> None:
        """Let go of the lock, if held: the next worker takes over."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
