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

# time.monotonic() (one clock for every process of the host), bytes held, the sender's pid (0: it
# resigned), and the pid of the sender before it if that one went without resigning (0: it resigned)
STATE = struct.Struct("<dqii")


class Election:
    """This process's candidacy; used by its sender thread only."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "sender.lock"
        self.fd: int | None = None
        self.before = 0  # as the elected one: the pid of a sender before it that never resigned
        self.sender = 0  # as a follower: the host's sender's pid, as last seen running (0: none)

    def won(self) -> bool:
        """Whether this process holds the lock now (asking for it, without waiting)."""
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        _, _, before, _ = self.state()  # its pid still there: it went without resigning (a kill -9, say)
        self.before = before if before != os.getpid() else 0
        return True

    def publish(self, beat: float, held: int, pid: int | None = None) -> None:
        """As the elected one: note that the host's sender (this process, or ``pid``) ran at
        ``beat`` and counted ``held``."""
        if self.fd is not None:
            state = STATE.pack(beat, held, os.getpid() if pid is None else pid, self.before)
            with contextlib.suppress(OSError):  # a disk that refuses it shows as a stale beat
                os.pwrite(self.fd, state, 0)

    def state(self) -> tuple[float, int, int, int]:
        """When the host's sender last ran, what it counted then, its pid, and the pid of a sender
        before it that never resigned, as it noted ((0.0, 0, 0, 0): never; a pid of 0: it resigned)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(STATE.size)
        except OSError:
            return 0.0, 0, 0, 0
        return STATE.unpack(data) if len(data) == STATE.size else (0.0, 0, 0, 0)  # type: ignore[return-value]

    def follow(self, now: float, fresh_s: float) -> tuple[float, int, str]:
        """As a worker beside the host's sender: ``state``'s beat and count, and, once, words for a
        sender this worker saw running (a beat under ``fresh_s`` old) that went without resigning
        and was replaced ("" otherwise). A beat ahead of ``now`` is from before a reboot (the
        monotonic clock starts again): taken as none."""
        beat, held, pid, before = self.state()
        if beat > now:
            beat, held, pid, before = 0.0, 0, 0, 0
        died = f"the host's sender (pid {before}) died; pid {pid} took over" if 0 != before == self.sender != pid \
            else ""
        if pid != self.sender or died:
            self.sender = pid if now - beat < fresh_s else 0
        return beat, held, died

    def resign(self) -> None:
        """Let go of the lock, if held, saying so (a sender gone without a word died): the next
        worker takes over."""
        if self.fd is not None:
            self.before = 0
            beat, held, _, _ = self.state()
            self.publish(beat, held, pid=0)
            os.close(self.fd)
            self.fd = None
