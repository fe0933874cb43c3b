"""Deliver what a spool directory holds: ``collector-drain [--dead-letters] [--timeout S]``.

Installed with the package as the ``collector-drain`` command (``.venv/bin/collector-drain`` in a
checkout); ``python -m app.drain`` is the same.

Reads the collector's settings from the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``COLLECTOR_SPOOL_DIR``, ...), like the collector. It sends every log segment no running
process holds (left by a stopped collector, or by a host being retired), and with
``--dead-letters`` the dead letters too, once their cause is fixed. It holds the directory's
``sender.lock`` meanwhile, so a collector that starts waits for it to end. It prints what it
delivered and what is left. Exit status: 0 nothing is left; 1 something is left; 2 it could
not start (a bad setting; a directory that is missing, not a directory or not a spool; or a
running collector's elected sender holds ``sender.lock`` and delivers the directory itself).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import fnmatch
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import deadletter, registry
from .config import ConfigError, Settings, declarations
from .kafka_client import KAFKA, Clients, producer_configs
from .log import Log
from .logs import plural
from .segment import Record
from .sender import Sender
from .topics import Topics

#: What the collector writes in its spool directory: segments, their ack files, temporaries
#: (``.<segment>.tmp``), the log's write probe, the election's lock, the segment sequence, the
#: dead letters and the last good registry. Anything else means the directory is not a spool.
SPOOL_FILES = ("*.wal", "*.wal.ack", "*.log", "*.log.ack", ".*.tmp", ".probe-*", "sender.lock", "sequence",
               deadletter.DIRECTORY, registry.KEPT)


class CannotStart(Exception):
    """The command cannot run on this directory; the message says why."""


def check_spool(spool: Path) -> None:
    """Raise ``CannotStart`` unless ``spool`` is a directory holding only what the collector writes."""
    if not spool.exists():
        raise CannotStart(f"the spool directory {spool} does not exist (COLLECTOR_SPOOL_DIR)")
    if not spool.is_dir():
        raise CannotStart(f"the spool directory {spool} is not a directory (COLLECTOR_SPOOL_DIR)")
    try:
        names = sorted(os.listdir(spool))
    except OSError as exc:
        raise CannotStart(f"the spool directory {spool} cannot be read: {exc.strerror or exc}") from None
    strangers = [n for n in names if not any(fnmatch.fnmatchcase(n, pattern) for pattern in SPOOL_FILES)]
    if (spool / deadletter.DIRECTORY).is_file():
        strangers.append(f"a file named {deadletter.DIRECTORY}")
    if strangers:
        shown = ", ".join(strangers[:5]) + (", ..." if len(strangers) > 5 else "")
        raise CannotStart(f"{spool} is not a collector's spool directory: it holds {shown} (COLLECTOR_SPOOL_DIR)")


def hold(spool: Path) -> int:
    """Take the spool's ``sender.lock`` without waiting, for as long as the descriptor returned is open."""
    try:
        fd = os.open(spool / "sender.lock", os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise CannotStart(f"{spool / 'sender.lock'} cannot be opened: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CannotStart(f"a running collector holds {spool} (its sender holds sender.lock) and delivers "
                          "it itself; stop it first to drain the directory") from None
    return fd


def _send(producer: Any, record: Record) -> Any:
    try:
        return producer.send(record.topic, key=record.key, value=record.value)
    except Exception as exc:  # noqa: BLE001 - refused at once (too large, a closed producer): it stays
        logging.getLogger(__name__).warning("a dead letter to %s not sent: %r", record.topic, exc)
        return None


def send_all(producer: Any, topics: Topics, records: list[Record], timeout: float) -> list[bool]:
    """Send records and wait for each answer up to ``timeout``: which ones Kafka acknowledged."""
    topics.ensure(list({r.topic for r in records}))
    futures = [_send(producer, r) if r.topic in topics else None for r in records]
    with contextlib.suppress(Exception):  # it gives up (KafkaTimeoutError): what is unanswered stays
        producer.flush(timeout)
    return [f is not None and f.succeeded() for f in futures]


def deliver(settings: Settings, clients: Clients, dead_letters: bool, timeout: float) -> int:
    """Send the log segments no process holds, and the dead letters when asked; the exit status."""
    configs = producer_configs(settings)
    spool = settings.spool_dir
    wal = Log(spool, settings.spool_max_bytes, settings.spool_segment_bytes)
    topics = Topics(clients.admin, configs, settings.topic_partitions, settings.topic_replication)
    sender = Sender(settings, wal, topics, clients.producer, configs)
    sender.reset()
    deadline = time.monotonic() + timeout
    sender.step()  # adopts every segment whose lock is free: no running process holds it
    taken = len(sender.cursors)
    while sender.cursors and time.monotonic() < deadline:
        time.sleep(sender.interval_s)
        sender.step()
    if dead_letters:
        delivered, left = deadletter.resend(
            spool, lambda rs: send_all(sender.producer, topics, rs, max(1.0, deadline - time.monotonic())))
    else:
        delivered, left = 0, deadletter.count(spool)
    sender.finish(time.monotonic())
    held = wal.paths()
    print(f"log: {plural(sender.lanes.delivered, 'event')} delivered from {plural(taken, 'segment')}; "
          f"{plural(len(held), 'segment')} left" + (" (a running collector holds them, or Kafka did not take them)"
                                                      if held else ""))
    print(f"dead letters: {delivered} delivered, {left} left in {deadletter.directory(spool)}")
    return 0 if not held and not left else 1


#: The settings the command reads, as the collector does; --help lists them with their defaults.
VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "COLLECTOR_SPOOL_DIR", "COLLECTOR_TOPIC_PARTITIONS",
             "COLLECTOR_TOPIC_REPLICATION", "COLLECTOR_KAFKA_ACKS", "COLLECTOR_KAFKA_COMPRESSION")


def environment() -> str:
    """--help's list of the environment variables the command reads."""
    declared = {variable: (default, meaning) for variable, default, meaning in declarations()}
    lines = [f"  {v:<29} {declared[v][1]} (default {declared[v][0]})" for v in VARIABLES]
    return ("environment (give the collector's own values; a bad one stops the command, naming it):\n"
            + "\n".join(lines) + "\n  the other COLLECTOR_KAFKA_* settings, as the collector's (README)\n\n"
            "exit status: 0 nothing is left; 1 something is left; 2 it did not start")


def main(argv: list[str] | None = None, clients: Clients = KAFKA) -> int:
    """The command; ``clients`` make its Kafka clients."""
    parser = argparse.ArgumentParser(prog="collector-drain",
                                     description="Deliver what a spool directory holds: the log segments that no "
                                     "running process holds,\nand with --dead-letters the dead letters.",
                                     epilog=environment(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dead-letters", action="store_true", help="also send the dead letters again")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        # Always one sender of its own, which takes only segments whose lock is free: as the
        # host's sender (COLLECTOR_SENDER=host) it would also follow those live writers hold.
        settings = dataclasses.replace(Settings.from_env(), sender="worker")
        check_spool(Path(settings.spool_dir))
        lock = hold(Path(settings.spool_dir))
    except (ConfigError, CannotStart) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        return deliver(settings, clients, args.dead_letters, args.timeout)
    finally:
        os.close(lock)


if __name__ == "__main__":
    sys.exit(main())
