"""Print the events that reached an account's topic: ``python dev/events.py AID``."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("aid", help="the account id")
    parser.add_argument("--servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                        or f"127.0.0.1:{os.environ.get('BROKER_PORT', '9092')}")
    parser.add_argument("--template", default=os.environ.get("COLLECTOR_TOPIC_TEMPLATE", "events.{aid}"))
    args = parser.parse_args()
    topic = args.template.replace("{aid}", args.aid)
    records = read_records(args.servers, topic, timeout=10.0)
    for r in sorted(records, key=lambda r: r.timestamp):
        print(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset,
                          "key": r.key.decode() if r.key else None, "value": json.loads(r.value)}))
    print(f"{len(records)} events on {topic} at {args.servers}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
