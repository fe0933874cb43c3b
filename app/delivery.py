"""Delivery as a Flask extension: a request appends its events to this worker's log on disk and
returns; the sender thread takes them to Kafka from there.

Per process: the log, the sender and the probe are made after gunicorn forks the worker.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson
from flask import Flask, current_app

from . import health, metrics
from .config import Settings, get_settings
from .kafka_client import KAFKA, Clients, producer_configs
from .log import Log, LogFull
from .segment import Record, writable
from .sender import Sender
from .topics import Topics

log = logging.getLogger(__name__)
EXTENSION = "collector.delivery"


class Unavailable(Exception):
    """The collector cannot keep this event now: the caller should retry later (503)."""


class Pipeline:
    """This process's way from a request to Kafka: the log, the sender, the probe."""

    def __init__(self, settings: Settings, clients: Clients = KAFKA, sends: bool = False) -> None:
        self.settings = settings
        # With COLLECTOR_SENDER=process, only the sender process's pipeline (``sends``) runs for
        # the host's sender; a web worker's follows it.
        self.candidate = settings.sender != "process" or sends
        self.clients = clients
        self.template = settings.topic_template
        self.ready_s = settings.ready_max_age_ms / 1000
        self.fsync_each = settings.spool_fsync_ms == 0
        self.shutdown_s = settings.shutdown_flush_ms / 1000
        self._pid = 0
        self._closing = False

    def start(self) -> None:
        """Make this process's log, sender and probe (after a fork: anew)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._closing = False
        s = self.settings
        configs = producer_configs(s)
        self.log = Log(s.spool_dir, s.spool_max_bytes, s.spool_segment_bytes, shared=s.sender != "worker")
        topics = Topics(self.clients.admin, configs, s.topic_partitions, s.topic_replication)
        self.probe = health.Probe(self.clients.admin, configs, self.ready_s)
        self.sender = Sender(s, self.log, topics, self.clients.producer, configs, lambda: self.probe.outages,
                             lambda: self.probe.heard, self.candidate)
        self.supervisor = health.Supervisor(self.ready_s)
        self.supervisor.start("sender", self.sender.run)
        self.supervisor.start("probe", lambda: self.probe.run(self.supervisor.stopping))
        if problem := writable(self.log.dir):
            log.error("the log cannot be written (%s): every event gets 503 until it can", problem)

    def record(self, event: dict[str, Any]) -> Record:
        """The Kafka record of an internal event: its account's topic, keyed by instance_id."""
        return Record(self.template.replace("{aid}", event["account_id"]), event["instance_id"].encode(),
                      orjson.dumps(event), time.time())

    def put(self, events: list[dict[str, Any]]) -> None:
        """Append events to the log, all or none, in order; raises ``Unavailable``."""
        if self._pid != os.getpid():
            self.start()
        if self._closing:
            raise Unavailable("the collector is shutting down")
        try:
            self.log.append([self.record(e) for e in events], sync=self.fsync_each)
        except (LogFull, OSError) as exc:
            raise Unavailable(f"the log on disk cannot keep it ({exc})") from None
        metrics.count(metrics.ACCEPTED, len(events))

    def keep(self, records: list[Record]) -> bool:
        """Append records other than events (rejects) to the log, only while it is less than half
        full: the other half stays the events' (a Kafka outage fills it); whether it kept them."""
        if self._pid != os.getpid():
            self.start()
        if self._closing or self.log.held * 2 >= self.log.max_bytes:  # held: as last counted, read without lock
            return False
        try:
            self.log.append(records, sync=self.fsync_each)
        except (LogFull, OSError):
            return False
        return True

    def unready(self) -> str | None:
        """Why this worker is not ready, or None; never blocks."""
        if self._pid != os.getpid():
            return "not started"
        when, why = self.sender.replaced  # a sender process (or elected worker) that died: seen for a while
        if when and time.monotonic() - when <= self.ready_s:
            return why
        return health.unready(self.supervisor, self.probe, self.sender.heard, self.sender.last_run(), self.ready_s)

    def close(self) -> None:
        """At exit: finish what is in flight within COLLECTOR_SHUTDOWN_FLUSH_MS; the rest stays in the log."""
        if self._pid != os.getpid():
            return
        self._closing = True
        self.log.seal()
        self.sender.deadline = time.monotonic() + self.shutdown_s
        self.supervisor.stopping.set()
        self.sender.stop.set()
        self.supervisor.stop(self.shutdown_s + 1)
        metrics.flush()
        self._pid = 0


def init_app(app: Flask, clients: Clients = KAFKA) -> None:
    """Give ``app`` a pipeline, its Kafka clients made by ``clients``; it starts per process on
    first use (or in gunicorn's post_worker_init)."""
    app.extensions[EXTENSION] = Pipeline(get_settings(app), clients)


def get_pipeline(app: Flask | None = None) -> Pipeline:
    """The pipeline of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]
