"""Print the events that reached an account's topic: ``make events AID=1`` (``python -m dev.events 1``)."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from app.ids import ID_MESSAGE, canonical_id
from app.logs import plural


def read_records(servers: str, topic: str, count: int | None = None, timeout: float = 10.0) -> list[Any]:
    """Every record of ``topic`` from the start, read until ``count`` are seen or ``timeout`` passes.

    With ``count`` None it reads until the topic has been quiet for a second. Records are
    counted by reading them: the embedded broker's end offsets are not to be trusted.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
        consumer_timeout_ms=200, api_version=(3, 9),
    )
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        # Asking for one topic's metadata creates it on a broker that auto-creates topics;
        # racing the collector's producer there, Tansu was seen to lose the records. So
        # wait until the topic is listed (asking for all topics creates none).
        while topic not in consumer.topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        partitions = consumer.partitions_for_topic(topic) if topic in consumer.topics() else None
        if not partitions:
            return records
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and (count is None or len(records) < count):
            batch = consumer.poll(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
            if batch:
                quiet_since = time.monotonic()
            elif count is None and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        consumer.close()
    return records


def reachable(servers: str) -> bool:
    """Whether one of ``servers`` (a host:port list) takes a connection."""
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
            return True
        except (OSError, ValueError):
            continue
    return False


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev.events", description="Print the events on an account's topic, one JSON line each.")
    parser.add_argument("aid", help="the account id, as in the collect path (007 is account 7)")
    parser.add_argument("--servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                        or f"127.0.0.1:{os.environ.get('BROKER_PORT', '9092')}",
                        help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:BROKER_PORT, 9092 unless set)")
    parser.add_argument("--template", default=os.environ.get("COLLECTOR_TOPIC_TEMPLATE", "events.{aid}"),
                        help="the topic of an account (default: COLLECTOR_TOPIC_TEMPLATE, else events.{aid})")
    args = parser.parse_args()
    account = canonical_id(args.aid)  # as the collector spells it: 007 is account 7, on events.7
    if account is None:
        parser.error(f"the account id {args.aid!r} {ID_MESSAGE}")
    topic = args.template.replace("{aid}", account)
    if not reachable(args.servers):  # kafka-python would wait for it for ever
        print(f"cannot read {topic}: nothing answers at {args.servers} (start make run first; give make events "
              "the BROKER_PORT= or KAFKA_BOOTSTRAP_SERVERS= that make run had)", file=sys.stderr)
        return 1
    records = read_records(args.servers, topic, timeout=10.0)
    for r in sorted(records, key=lambda r: r.timestamp):
        print(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset,
                          "key": r.key.decode() if r.key else None, "value": json.loads(r.value)}))
    print(f"{plural(len(records), 'event')} on {topic} at {args.servers}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
