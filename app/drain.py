"""Deliver what a spool directory holds: ``python -m app.drain [--dead-letters] [--timeout S]``.

Reads the collector's settings from the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``COLLECTOR_SPOOL_DIR``, ...), like the collector. It sends every log segment no running
process holds (left by a stopped collector, or by a host being retired), and with
``--dead-letters`` the dead letters too, once their cause is fixed. It prints what it
delivered and what is left; the exit status is 0 when nothing is left, 1 otherwise.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from . import deadletter
from .config import ConfigError, Settings
from .kafka_client import KAFKA, Clients, producer_configs
from .log import Log
from .segment import Record
from .sender import Sender
from .topics import Topics


def send_all(producer: Any, topics: Topics, records: list[Record], timeout: float) -> list[bool]:
    """Send records and wait for each answer: which ones Kafka acknowledged."""
    topics.ensure(list({r.topic for r in records}))
    futures = [producer.send(r.topic, key=r.key, value=r.value) if r.topic in topics else None for r in records]
    producer.flush(timeout)
    return [f is not None and f.succeeded() for f in futures]


def main(argv: list[str] | None = None, clients: Clients = KAFKA) -> int:
    """The command; ``clients`` make its Kafka clients."""
    parser = argparse.ArgumentParser(prog="python -m app.drain", description=__doc__.splitlines()[0])
    parser.add_argument("--dead-letters", action="store_true", help="also send the dead letters again")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    configs = producer_configs(settings)
    spool = settings.spool_dir
    wal = Log(spool, settings.spool_max_bytes, settings.spool_segment_bytes)
    topics = Topics(clients.admin, configs, settings.topic_partitions, settings.topic_replication)
    sender = Sender(settings, wal, topics, clients.producer, configs)
    sender.reset()
    deadline = time.monotonic() + args.timeout
    sender.step()  # adopts every segment no running process holds
    taken = len(sender.cursors)
    while sender.cursors and time.monotonic() < deadline:
        time.sleep(sender.interval_s)
        sender.step()
    if args.dead_letters:
        delivered, left = deadletter.resend(
            spool, lambda rs: send_all(sender.producer, topics, rs, max(1.0, deadline - time.monotonic())))
    else:
        delivered, left = 0, deadletter.count(spool)
    sender.finish(time.monotonic())
    held = wal.paths()
    print(f"log: {sender.lanes.delivered} events delivered from {taken} segments; {len(held)} segments left"
          + (" (a running collector holds them, or Kafka did not take them)" if held else ""))
    print(f"dead letters: {delivered} delivered, {left} left in {deadletter.directory(spool)}")
    return 0 if not held and not left else 1


if __name__ == "__main__":
    sys.exit(main())
