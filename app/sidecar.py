"""The host's sender as a process of its own (``COLLECTOR_SENDER=process``, the default): a
gunicorn dirty app, so gunicorn starts it beside the web workers, restarts it when it dies (its
dirty arbiter logs each death), and stops it with them (it delivers until they have let go of
their segments). The web workers only append to the log; this
process reads every worker's segments and sends them, on an interpreter lock of its own.

It runs the same pipeline as a worker's (``delivery.py``), as the only candidate for
``sender.lock``: the workers read its beat there, so a dead or stuck sender process shows in every
worker's ``/readyz`` until gunicorn has started it again. See ``gunicorn.conf.py``.
"""
from __future__ import annotations

import logging
import os
import signal
import time

from gunicorn.dirty import DirtyApp

from .config import Settings
from .delivery import Pipeline
from .kafka_client import KAFKA

log = logging.getLogger(__name__)


class SenderProcess(DirtyApp):
    """The dirty app: one pipeline that sends, and a watch on the dirty arbiter above it."""

    workers = 1  # one sender per host: a second one would only wait for sender.lock
    clients = KAFKA  # how it makes its Kafka clients (tests put fakes here)

    def init(self) -> None:
        self.pipeline = Pipeline(Settings.from_env(), self.clients, sends=True)
        self.pipeline.start()
        self._parent = os.getppid()
        self.pipeline.supervisor.start("watch", self._watch)

    def _watch(self) -> None:
        """Every second: stop this process when gunicorn's dirty arbiter is gone (gunicorn's dirty
        worker does not watch its parent: a sender left behind by a killed server would hold
        sender.lock for ever), or when the sender thread is stuck (its heartbeat is the dirty
        worker's event loop, not this thread: gunicorn would never replace it otherwise)."""
        sender, stopping = self.pipeline.sender, self.pipeline.supervisor.stopping
        stuck_s = max(10 * sender.interval_s, self.pipeline.ready_s)
        while not stopping.wait(1.0):
            if os.getppid() != self._parent:
                why = "gunicorn's dirty arbiter is gone"
            elif sender.beat and time.monotonic() - sender.beat > stuck_s:
                why = f"the sender has not run for {time.monotonic() - sender.beat:.0f} s"
            else:
                continue
            log.error("%s: the sender process stops, for gunicorn to start another", why)
            os.kill(os.getpid(), signal.SIGTERM)  # the dirty worker's own way out: close() below
            return

    def __call__(self, action: str, *args: object, **kwargs: object) -> object:
        """No action is served: the web workers read the sender's state from ``sender.lock``."""
        raise ValueError(f"the sender process serves no action ({action!r})")

    def close(self) -> None:
        """At exit: deliver within COLLECTOR_SHUTDOWN_FLUSH_MS; the rest stays in the log."""
        self.pipeline.close()
