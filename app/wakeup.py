"""The sender process's wake-up: the kernel tells it when a worker appends to the log (inotify on
the log's directory), so an event is read at once rather than at the next interval, and an idle
log costs nothing between intervals."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

log = logging.getLogger(__name__)
# A woken pass begins this long after the one before at the soonest: an append after a quiet spell
# is read at once, a busy log in bursts (each pass and each of kafka-python's requests costs the
# sender CPU, and each wake-up of a process above the workers costs them their caches).
PACE_MS = 10
# The sender's own writes, which wake nothing. (Not a list of what workers write: a worker appends
# through the descriptor it made its segment with, and inotify names that ".<segment>.tmp".)
OWN = (".ack", "sender.lock")
# A segment made in the directory; an overflowed queue (more appends than the kernel keeps) may
# have dropped one's event.
NEW = flags.CREATE | flags.MOVED_TO | flags.Q_OVERFLOW


class Wakeup:
    """A watch on the log's directory; owned by the sender thread."""

    def __init__(self, directory: Path, stop: threading.Event) -> None:
        self.stop = stop
        self.created = False  # the last wait saw a segment made in the directory ...
        self.appended = False  # ... or any segment written to (False: it waited out its time)
        self.paced = 0.0  # when the next pass may begin (monotonic)
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
        """Wait for an append, at most ``timeout_s``, and then for the pace; True when the sender
        must stop instead. ``created`` tells whether a segment was made meanwhile (the sender adopts
        it at once)."""
        self.created = self.appended = False
        deadline = time.monotonic() + timeout_s
        while not self.stop.is_set():
            self._take(self.inotify.read(timeout=max(1, int((deadline - time.monotonic()) * 1000))))
            if self.appended or time.monotonic() >= deadline:
                break
        rest = self.paced - time.monotonic()
        if self.appended and rest > 0 and not self.stop.wait(rest):
            self._take(self.inotify.read(timeout=0))  # what came meanwhile is read in this pass
        self.paced = time.monotonic() + PACE_MS / 1000
        return self.stop.is_set()

    def _take(self, events: list[Any]) -> None:
        appended = [e for e in events if not e.name.endswith(OWN)]
        self.appended = self.appended or bool(appended)
        self.created = self.created or any(e.mask & NEW for e in appended)

    def close(self) -> None:
        self.inotify.close()
