"""One sender per host (``COLLECTOR_SENDER=host``): the worker that holds the ``flock`` of
``sender.lock`` in the log directory. The kernel frees the lock when that worker dies, however
it dies, and the next worker to ask takes it."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path


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

    def resign(self) -> None:
        """Let go of the lock, if held: the next worker takes over."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
