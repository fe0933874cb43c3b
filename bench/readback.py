"""What reached Kafka, and what a stopped collector left in its log: the benchmarks' check."""
from __future__ import annotations

import os
import time
from pathlib import Path

import orjson

from dev.events import read_records


def create_topics(servers: str, topics: list[str]) -> None:
    """Create topics in one request, as production clusters provision them (one partition each,
    so that reading a thousand back stays quick)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=servers, api_version=(3, 9))
    try:
        admin.create_topics([NewTopic(t, 1, 1) for t in topics], raise_errors=False)
    finally:
        admin.close()



def events_in_log(spool: Path) -> set[str]:
    """The event ids a stopped collector left in its write-ahead log, past each segment's
    acknowledged position (or, for a commit before the log, in its spool's JSON lines)."""
    from app.reader import records_in
    from app.segment import Segment, segments

    ids = {orjson.loads(line)["event_id"] for f in spool.glob("*.jsonl") for line in f.read_bytes().splitlines()}
    for path in segments(spool):
        fd = os.open(path, os.O_RDONLY)
        try:
            segment = Segment(path, fd, os.fstat(fd).st_size, sealed=True)
            ids |= {orjson.loads(r.value)["event_id"] for r in records_in(segment, segment.acked())}
        finally:
            os.close(fd)
    return ids



def event_ids(servers: str, topics: list[str], expected: int) -> set[str]:
    """The distinct event ids ``topics`` hold (delivery is at least once: duplicates are possible)."""
    if len(topics) > 1:
        return {orjson.loads(v)["event_id"] for v in read_all(servers, topics, expected)}
    records = read_records(servers, topics[0], count=expected, timeout=60)
    ids = {orjson.loads(r.value)["event_id"] for r in records}
    if len(ids) < len(records):  # duplicates: read on until the topic is quiet, for the rest
        ids = {orjson.loads(r.value)["event_id"] for r in read_records(servers, topics[0], timeout=60)}
    return ids



def read_all(servers: str, topics: list[str], expected: int, timeout: float = 90) -> list[bytes]:
    """The values of every record of ``topics`` (one partition each), with one consumer."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False, api_version=(3, 9))
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(t, 0) for t in topics])
        consumer.seek_to_beginning()
        deadline = quiet = time.monotonic() + timeout
        while time.monotonic() < min(deadline, quiet):
            for batch in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in batch]
                quiet = time.monotonic() + 5  # read on until nothing came for 5 s
            if len(values) >= expected:
                quiet = min(quiet, time.monotonic() + 2)
    finally:
        consumer.close()
    return values

