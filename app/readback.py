"""The live debugger's Kafka side: the last records of a tracker's topic and of the rejects topic,
read back on a thread of their own, one read per host at a time, within a time budget."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from .config import Settings
from .ids import canonical_id
from .kafka_client import TopicPartition, known_partitions

#: Records read from the end of each partition; the debugger shows the newest of those that match.
#: A tracker's events share their topic with the account's other trackers, and the rejects topic
#: is every account's: reading further back finds older ones, at about 10 µs a record.
EVENTS_SCAN = 200
REJECTS_SCAN = 500
SHOWN = 50  # the most of each kind an answer holds
BUDGET_S = 1.0  # how long a request waits for Kafka; the reader's own calls time out by then too
LOCK = "debug.lock"  # in the spool directory: one read per host (every worker's answer 429 meanwhile)


def consumer_configs(settings: Settings) -> dict[str, Any]:
    """kafka-python's consumer settings for a read: no group, no commits, no waiting on a bootstrap."""
    return {
        "bootstrap_servers": list(settings.kafka_bootstrap_servers),
        "client_id": f"collector-debug-{os.getpid()}",
        "group_id": None,
        "enable_auto_commit": False,
        "api_version": (3, 9),  # a ceiling, as the producer's: constructing it never waits on Kafka
        "fetch_max_wait_ms": 50,  # a partition caught up answers empty this soon
        "request_timeout_ms": 2000,  # a stalled broker lets the reader thread go soon after the answer
        "reconnect_backoff_max_ms": 1000,
        "metrics_enabled": False,
    }


class Found:
    """What one read found: the reader thread fills it, the request takes it at its deadline.
    ``lock`` guards ``events``, ``rejects`` and ``error``; ``done`` is set when the reader ends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.events: list[dict[str, Any]] | None = None  # None: not read (yet)
        self.rejects: list[dict[str, Any]] | None = None
        self.error: str | None = None

    def put(self, kind: str, items: list[dict[str, Any]]) -> None:
        with self.lock:
            setattr(self, kind, items)

    def fail(self, error: str) -> None:
        with self.lock:
            self.error = error

    def taken(self, timeout: float) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None, str | None]:
        """Wait up to ``timeout`` seconds for the reader; then what it read so far, and why not the rest."""
        finished = self.done.wait(timeout)
        with self.lock:
            error = self.error or (None if finished else f"Kafka did not answer within {BUDGET_S:g} s")
            return self.events, self.rejects, error


class Busy(Exception):
    """Another read holds the host's lock."""


def take_lock(spool_dir: str) -> int:
    """The host's debugger lock, held through the returned descriptor until it is closed; ``Busy``
    when another read holds it. Not waited for: the page asks again at its next tick."""
    fd = os.open(os.path.join(spool_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy from None
    return fd


def start(settings: Settings, make_consumer: Callable[..., Any], account: str, tracker: str) -> Found:
    """Start reading ``account``'s events of ``tracker`` and its rejects; ``Busy`` if another read
    is under way on this host, OSError if the lock cannot be made."""
    fd = take_lock(settings.spool_dir)
    found = Found()
    topic = settings.topic_template.replace("{aid}", account)
    match = Match(account, tracker)
    deadline = time.monotonic() + BUDGET_S

    def run() -> None:
        try:  # the lock is this thread's from here: held until the read is over, even past the answer
            read(make_consumer(**consumer_configs(settings)), found, deadline,
                 [("events", topic, EVENTS_SCAN, match.event), ("rejects", settings.rejects_topic, REJECTS_SCAN,
                                                                match.reject)])
        except Exception as exc:  # noqa: BLE001 - whatever it is, the page says it
            found.fail(f"cannot read Kafka: {str(exc) or type(exc).__name__}")
        finally:
            os.close(fd)
            found.done.set()

    threading.Thread(target=run, name="debug-read", daemon=True).start()
    return found


class Match:
    """Which records belong to one account's tracker."""

    def __init__(self, account: str, tracker: str) -> None:
        self.account, self.tracker = account, tracker

    def event(self, value: Any) -> bool:
        return isinstance(value, dict) and (value.get("account_id"), value.get("tracker_id")) == (
            self.account, self.tracker)

    def reject(self, value: Any) -> bool:
        """A reject's ids are as sent (``007``): matched in their one spelling."""
        if not isinstance(value, dict):
            return False
        aid, tid = value.get("aid"), value.get("tid")
        return (isinstance(aid, str) and isinstance(tid, str)
                and canonical_id(aid) == self.account and canonical_id(tid) == self.tracker)


def read(consumer: Any, found: Found, deadline: float,
         kinds: list[tuple[str, str, int, Callable[[Any], bool]]]) -> None:
    """Read each kind's topic in turn into ``found``: its newest matching records, newest first.
    A topic that does not exist is read as empty: it is never created."""
    try:
        partitions = known_partitions(consumer, [topic for _, topic, _, _ in kinds], left_ms(deadline))
        for kind, topic, scan, matches in kinds:
            records = tail(consumer, topic, partitions.get(topic, set()), scan, deadline)
            items = [item for item in map(shown, records) if matches(item["value"])]
            items.sort(key=lambda i: (i["timestamp"], i["partition"], i["offset"]), reverse=True)
            found.put(kind, items[:SHOWN])
    finally:
        consumer.close()


def left_ms(deadline: float) -> int:
    """Milliseconds until ``deadline``; TimeoutError once it has passed."""
    left = int((deadline - time.monotonic()) * 1000)
    if left <= 0:
        raise TimeoutError("the read took longer than its budget")
    return left


def tail(consumer: Any, topic: str, partitions: set[int], scan: int, deadline: float) -> list[Any]:
    """The last ``scan`` records of each of ``topic``'s partitions.

    Read from ``scan`` before the end offset up to the high watermark of the fetches: the embedded
    broker's end offsets were seen one batch short (the last batch's first offset), so what is
    read is counted by reading, and a deque keeps the last ``scan``."""
    if not partitions:
        return []
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = consumer.end_offsets(tps, timeout_ms=left_ms(deadline))
    begins = consumer.beginning_offsets(tps, timeout_ms=left_ms(deadline))
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(begins[tp], ends[tp] - scan))
    kept: dict[Any, deque[Any]] = {tp: deque(maxlen=scan) for tp in tps}
    while not all(caught_up(consumer, tp, deadline) for tp in tps):
        for tp, records in consumer.poll(timeout_ms=min(100, left_ms(deadline))).items():
            kept[tp].extend(records)
    return [record for records in kept.values() for record in records]


def caught_up(consumer: Any, tp: Any, deadline: float) -> bool:
    """Whether ``tp`` has been read up to the high watermark its last fetch told."""
    highwater = consumer.highwater(tp)
    return highwater is not None and consumer.position(tp, timeout_ms=left_ms(deadline)) >= highwater


def shown(record: Any) -> dict[str, Any]:
    """A record as the debugger shows it: where it is, when, and its value (JSON when it is)."""
    try:
        value = orjson.loads(record.value)
    except (orjson.JSONDecodeError, TypeError):
        value = None if record.value is None else record.value.decode(errors="replace")
    return {"partition": record.partition, "offset": record.offset, "timestamp": record.timestamp,
            "key": None if record.key is None else record.key.decode(errors="replace"), "value": value}
