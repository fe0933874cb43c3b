"""What many accounts cost the collector: ``python bench/accounts.py [--accounts N]``.

gunicorn (``--workers``, one sender per host) against the embedded broker; one event to each of
N accounts (aid 1..N, so N topics; default 10,000), from ``--threads`` client threads. Every
``--every`` accounts (a tenth), then every 10 s until ``collector_events_total`` delivered
reaches accepted in /metrics (or ``--wait`` passes), one line of figures (bench/figures.py: the
spool, each process's descriptors/sockets/epolls and RSS) with the events posted, accepted and
delivered. Then it reads the events back from Kafka, every topic (``--check all``) or a random
sample of ``--check`` accounts' topics (500), and counts the rest among the dead letters. Exit
status 1 if an event answered 204 is not in Kafka.

Tansu makes a topic in time that grows with the topics it has (alone, 1,000 more took 0.9 s at
1,000 and 17 s at 20,000): 100,000 would take it about an hour, so that is not the default.
``--topics-first`` makes them all before the collector starts, to see the collector's own cost.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python bench/accounts.py
    sys.path.insert(0, str(ROOT))

from bench.figures import Sampler, in_workdir  # noqa: E402
from bench.outage import stop_collector  # noqa: E402
from dev.broker import Broker  # noqa: E402
from tests.helpers import Collector  # noqa: E402

EVENT = {"action": "view", "object": "o", "vendor": "v", "product": "p"}
CHUNK = 1000  # topics read back at a time


def events(collector: Collector) -> Counter[str]:
    """``collector_events_total`` by outcome, all workers summed (empty if /metrics does not answer)."""
    try:
        status, _, body = collector.request("GET", "/metrics")
    except OSError:
        return Counter()
    return Counter({sample.labels["outcome"]: int(sample.value)
                    for family in text_string_to_metric_families(body.decode()) for sample in family.samples
                    if sample.name == "collector_events_total"} if status == 200 else {})


def post(collector: Collector, aid: int) -> int:
    """Post account ``aid``'s one event (instance_id ``acct-<aid>``): its status, 0 if the socket failed."""
    try:
        return collector.post_event({**EVENT, "instance_id": f"acct-{aid}"}, aid=str(aid))[0]
    except OSError:
        return 0


def in_kafka(broker: Broker, aids: list[int], found: set[int], patience: float = 20.0) -> None:
    """Add to ``found`` those of ``aids`` whose event is in their topic: one consumer, CHUNK topics
    at a time, each chunk read until all its events are seen or nothing new came for ``patience`` s."""
    consumer = KafkaConsumer(bootstrap_servers=broker.servers, group_id=None, enable_auto_commit=False,
                             api_version=(3, 9), consumer_timeout_ms=200, request_timeout_ms=120_000)
    try:
        topics = consumer.topics()  # asking for every topic creates none
        for start in range(0, len(aids), CHUNK):
            chunk = {f"events.{aid}": aid for aid in aids[start:start + CHUNK] if f"events.{aid}" in topics}
            consumer.assign([TopicPartition(topic, p) for topic in chunk
                             for p in sorted(consumer.partitions_for_topic(topic) or ())])
            consumer.seek_to_beginning()
            waiting, since = set(chunk.values()), time.monotonic()
            while waiting and time.monotonic() - since < patience:
                for part, records in consumer.poll(timeout_ms=500).items():
                    if any(r.key == f"acct-{chunk[part.topic]}".encode() for r in records):
                        waiting.discard(chunk[part.topic])
                        since = time.monotonic()
            found |= set(chunk.values()) - waiting
            print(f"  read back {min(start + CHUNK, len(aids)):,} of {len(aids):,} accounts: {len(found):,} found "
                  f"({len(topics):,} topics exist)", flush=True)
    finally:
        consumer.close()


def create_topics(broker: Broker, accounts: int, batch: int = 1000) -> None:
    """Create topics ``events.1`` to ``events.<accounts>`` (4 partitions), ``batch`` in each request."""
    admin = KafkaAdminClient(bootstrap_servers=broker.servers, api_version=(3, 9), request_timeout_ms=600_000)
    began = time.monotonic()
    try:
        for start in range(1, accounts + 1, batch):
            admin.create_topics([NewTopic(f"events.{aid}", 4, 1)
                                 for aid in range(start, min(start + batch, accounts + 1))])
            print(f"  {min(start + batch - 1, accounts):,} topics made in {time.monotonic() - began:.0f} s", flush=True)
    finally:
        admin.close()


def dead_letters(spool: Path) -> set[int]:
    """The accounts with an event in the dead letters (kept on disk: refused or failing too long)."""
    return {int(m) for path in (spool / "dead-letter").glob("*.jsonl")
            for m in re.findall(r'"key": ?"acct-(\d+)"', path.read_text(errors="replace"))}


def run(args: argparse.Namespace, workdir: Path) -> int:
    (workdir / "metrics").mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), **dict(e.split("=", 1) for e in args.env)}
    broker = Broker().start()
    if args.topics_first:
        create_topics(broker, args.accounts)
    collector = Collector(broker.servers, workdir, env=env, workers=args.workers)
    sampler: Sampler | None = None
    try:
        collector.start()
        sampler = Sampler(collector, broker, Path(collector.env["COLLECTOR_SPOOL_DIR"]))

        def figures(note: str = "") -> Counter[str]:
            counts = events(collector)
            sampler.sample(f"posted {posted:,}, accepted {counts['accepted']:,}, delivered {counts['delivered']:,}"
                           + "".join(f", {k} {v:,}" for k, v in counts.items() if k not in ("accepted", "delivered")
                                     and v) + note)
            return counts

        posted, statuses, began = 0, dict[int, int](), time.monotonic()
        figures()
        with ThreadPoolExecutor(args.threads) as pool:
            for start in range(1, args.accounts + 1, args.every):
                if time.monotonic() - began > args.deadline:
                    print(f"posting stopped after {args.deadline:.0f} s")
                    break
                chunk = range(start, min(start + args.every, args.accounts + 1))
                statuses.update(zip(chunk, pool.map(lambda aid: post(collector, aid), chunk), strict=True))
                posted += len(chunk)
                figures(f" ({posted / (time.monotonic() - began):.0f}/s)")
        posted_s = time.monotonic() - began
        answered = [aid for aid, status in statuses.items() if status == 204]
        sampler.tick(10)
        deadline, settled = time.monotonic() + args.wait, False
        while not settled and time.monotonic() < deadline:
            settled = events(collector)["delivered"] >= len(answered)
            time.sleep(0 if settled else 1)
        sampler.stopped.set()
        counts = figures(" (settled)" if settled else " (NOT settled)")
        settled_s = time.monotonic() - began
        aids = answered if args.check == "all" else sorted(random.sample(answered, min(int(args.check), len(answered))))
        reading = time.monotonic()
        found: set[int] = set()
        # Listing the topics waits for ever on a broker that does not answer: a thread, bounded.
        reader = threading.Thread(target=in_kafka, args=(broker, aids, found), daemon=True)
        reader.start()
        reader.join(args.read_timeout)
        if reader.is_alive():
            print(f"  reading back stopped after {args.read_timeout:.0f} s")
        found = set(found)
        read_s = time.monotonic() - reading
        dead = dead_letters(sampler.spool) & set(aids)
        print(f"\nsummary: --accounts {args.accounts:,} --workers {args.workers} --threads {args.threads}")
        print(f"  posted {posted:,} in {posted_s:.0f} s ({posted / posted_s:.0f}/s); answers: "
              f"{dict(Counter(s or 'socket error' for s in statuses.values()))}")
        print(f"  /metrics: accepted {counts['accepted']:,}, delivered {counts['delivered']:,} "
              f"({settled_s:.0f} s after the first post)")
        print(f"  Kafka, {'every topic' if args.check == 'all' else 'a random sample of topics'}: "
              f"{len(found):,} of {len(aids):,} events answered 204 found, read in {read_s:.0f} s; of the "
              f"rest {len(dead - found):,} are dead letters, {len(set(aids) - found - dead):,} neither (still in "
              f"the log, or lost)")
        for what, (value, where) in sampler.peak.items():
            print(f"  peak {what}: {value:,}  ({where})")
        return 0 if len(found) == len(aids) else 1
    finally:
        if sampler is not None:
            sampler.stopped.set()
        stop_collector(collector)
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000, help="(Tansu takes about an hour to make 100,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="client threads posting")
    parser.add_argument("--every", type=int, default=0, help="accounts between samples (default: a tenth)")
    parser.add_argument("--topics-first", action="store_true", help="create every topic before the collector starts")
    parser.add_argument("--check", default="500", help="'all', or how many accounts' topics to read back")
    parser.add_argument("--deadline", type=float, default=1200, help="most seconds of posting")
    parser.add_argument("--wait", type=float, default=600, help="most seconds to wait for delivery")
    parser.add_argument("--read-timeout", type=float, default=600, help="most seconds to read back")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a collector setting")
    parser.add_argument("--keep", action="store_true", help="keep the spool and gunicorn's log")
    args = parser.parse_args()
    args.every = args.every or max(args.accounts // 10, 1)
    return in_workdir("accounts-", args, run)


if __name__ == "__main__":
    sys.exit(main())
