"""Delivery as a Flask extension: a request appends its events to this worker's log on disk and
returns; the sender thread takes them to Kafka from there.

Per process: the log, the sender and the probe are made after gunicorn forks the worker.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Flask, current_app

from . import health, metrics
from .kafka_client import new_admin, new_producer, producer_configs
from .log import Log, LogFull
from .segment import Record
from .sender import Sender
from .topics import Topics

log = logging.getLogger(__name__)
EXTENSION = "collector.delivery"


class Unavailable(Exception):
    """The collector cannot keep this event now: the caller should retry later (503)."""


class Pipeline:
    """This process's way from a request to Kafka: the log, the sender, the probe."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.template: str = config["COLLECTOR_TOPIC_TEMPLATE"]
        self.ready_s: float = config["COLLECTOR_READY_MAX_AGE_MS"] / 1000
        self.fsync_each: bool = config["COLLECTOR_SPOOL_FSYNC_MS"] == 0
        self.shutdown_s: float = config["COLLECTOR_SHUTDOWN_FLUSH_MS"] / 1000
        self.producer_factory = config.get("COLLECTOR_KAFKA_FACTORY") or new_producer
        self.admin_factory = config.get("COLLECTOR_KAFKA_ADMIN_FACTORY") or new_admin
        self._pid = 0
        self._closing = False

    def start(self) -> None:
        """Make this process's log, sender and probe (after a fork: anew)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._closing = False
        c = self.config
        configs = producer_configs(c)
        self.log = Log(c["COLLECTOR_SPOOL_DIR"], c["COLLECTOR_SPOOL_MAX_BYTES"], c["COLLECTOR_SPOOL_SEGMENT_BYTES"],
                       shared=c["COLLECTOR_SENDER"] == "host")
        topics = Topics(self.admin_factory, configs, c["COLLECTOR_TOPIC_PARTITIONS"], c["COLLECTOR_TOPIC_REPLICATION"])
        self.probe = health.Probe(self.admin_factory, configs, self.ready_s)
        self.sender = Sender(c, self.log, topics, self.producer_factory, configs, lambda: self.probe.outages,
                             lambda: self.probe.heard)
        self.supervisor = health.Supervisor(self.ready_s)
        self.supervisor.start("sender", self.sender.run)
        self.supervisor.start("probe", lambda: self.probe.run(self.supervisor.stopping))
        if problem := self.log.check():
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

    def unready(self) -> str | None:
        """Why this worker is not ready, or None; never blocks."""
        if self._pid != os.getpid():
            return "not started"
        return health.unready(self.supervisor, self.probe, self.sender.heard, self.sender.beat, self.ready_s)

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


class Delivery:
    """Flask extension: ``delivery.init_app(app)``, then ``delivery.pipeline(app).put(events)``."""

    def init_app(self, app: Flask) -> None:
        """Give ``app`` a pipeline; it starts per process on first use (or gunicorn's post_worker_init)."""
        app.extensions[EXTENSION] = Pipeline(app.config)

    @staticmethod
    def pipeline(app: Flask | None = None) -> Pipeline:
        """The pipeline of ``app`` (default: the current app)."""
        return (app or current_app).extensions[EXTENSION]  # type: ignore[no-any-return]


delivery = Delivery()
