"""The host's sender as a process of its own (``COLLECTOR_SENDER=process``, the default): a
gunicorn dirty app, so gunicorn starts it beside the web workers, restarts it when it dies (its
dirty arbiter logs each death), and stops it last. The web workers only append to the log; this
process reads every worker's segments and sends them, on an interpreter lock of its own.

It runs the same pipeline as a worker's (``delivery.py``), as the only candidate for
``sender.lock``: the workers read its beat there, so a dead or stuck sender process shows in every
worker's ``/readyz`` until gunicorn has started it again. See ``gunicorn.conf.py``.
"""
from __future__ import annotations

import logging
import os
import signal

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
        # gunicorn's dirty worker does not watch its parent: without this, a sender left behind by
        # a killed server would hold sender.lock, and the next server's sender would wait for ever.
        self.pipeline.supervisor.start("parent", self._watch_parent)

    def _watch_parent(self) -> None:
        while not self.pipeline.supervisor.stopping.wait(1.0):
            if os.getppid() != self._parent:
                log.warning("gunicorn's dirty arbiter is gone: the sender process stops")
                os.kill(os.getpid(), signal.SIGTERM)  # the dirty worker's own way out: close() below
                return

    def __call__(self, action: str, *args: object, **kwargs: object) -> object:
        """No action is served: the web workers read the sender's state from ``sender.lock``."""
        raise ValueError(f"the sender process serves no action ({action!r})")

    def close(self) -> None:
        """At exit: deliver within COLLECTOR_SHUTDOWN_FLUSH_MS; the rest stays in the log."""
        self.pipeline.close()
