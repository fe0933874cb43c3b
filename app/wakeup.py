"""The sender process's wake-up: the kernel tells it when a worker appends to the log (inotify on
the log's directory), so an event is read at once rather than at the next interval, and an idle
log costs nothing between intervals."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)
# The sender's own writes, which wake nothing. (Not a list of what workers write: a worker appends
# through the descriptor it made its segment with, and inotify names that ".<segment>.tmp".)
OWN = (".ack", "sender.lock")


class Wakeup:
    """A watch on the log's directory; owned by the sender thread."""

    GATHER_MS = 2  # after the first append seen, wait this long for more: a busy log is read in bursts

    def __init__(self, directory: Path, stop: threading.Event) -> None:
        self.stop = stop
        self.created = False  # the last wait saw a segment made in the directory ...
        self.appended = False  # ... or any segment written to (False: it waited out its time)
        self.inotify = INotify()
        try:
            self.inotify.add_watch(directory, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
        except BaseException:
            self.inotify.close()
            raise

    @classmethod
    def of(cls, directory: Path, stop: threading.Event) -> Wakeup | None:
        """One on ``directory``, or None (the sender polls) when the kernel will not watch it."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return cls(directory, stop)
        except OSError as exc:  # out of inotify instances or watches (fs.inotify.max_user_*)
            log.warning("the log's directory cannot be watched (%r): the sender reads it every interval", exc)
            return None

    def wait(self, timeout_s: float) -> bool:
        """Wait for an append, at most ``timeout_s``; True when the sender must stop instead.
        ``created`` tells whether a segment was made meanwhile (the sender adopts it at once)."""
        self.created = self.appended = False
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set():
            events = self.inotify.read(timeout=max(1, int((deadline - time.monotonic()) * 1000)),
                                       read_delay=self.GATHER_MS)
            appended = [e for e in events if not e.name.endswith(OWN)]
            self.appended = bool(appended)
            self.created = any(e.mask & (flags.CREATE | flags.MOVED_TO) for e in appended)
            if appended or time.monotonic() >= deadline:
                break
        return self.stop.is_set()

    def close(self) -> None:
        self.inotify.close()
