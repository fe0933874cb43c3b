"""The sender's Kafka side (app/lanes.py), against a fake producer: order through failures, one
topic's trouble kept to its own lane, dead letters (refused, failing too long, filling memory)."""
from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

import pytest
from kafka.errors import InvalidRecordError, KafkaTimeoutError, MessageSizeTooLargeError

from app import deadletter
from app import lanes as lanes_module
from app.config import Settings
from app.kafka_client import KAFKA
from app.lanes import Lanes
from app.ledger import Entry
from app.topics import Topics
from tests.fakes import FakeKafkaAdmin, FakeKafkaProducer, SilentBroker, kafka_resources, left_open
from tests.helpers import log_record, metric, numbers, post_numbered, settled, started, wait_until


def test_kafka_fails_mid_stream_and_comes_back_in_order(make_app):
    client, pipeline = started(make_app())
    fake = pipeline.sender.producer
    fake.mode = "hold"
    for n in range(10):
        assert post_numbered(client, n).status_code == 204
    wait_until(lambda: len(fake.held) == 10, what="every event in flight")
    fake.error = KafkaTimeoutError("Batch expired")
    fake.fail_held()  # Kafka fails them all, and what comes next too
    for n in range(10, 20):
        assert post_numbered(client, n).status_code == 204
    wait_until(lambda: pipeline.sender.lanes.by_topic["events.1"].attempts >= 2, what="retries failing")
    fake.mode = "ok"
    settled(pipeline)
    assert numbers(fake) == list(range(20))
    assert not list(pipeline.log.dir.glob("dead-letter/*"))


def test_a_topic_kafka_refuses_holds_back_only_its_own_events(make_app, tmp_path):
    client, pipeline = started(make_app())
    dead = 'collector_events_total{outcome="dead_letter"}'
    before = metric(client.get("/metrics").get_data(as_text=True), dead)  # the process's count: other tests add
    fake = pipeline.sender.producer
    fake.refuse["events.666"] = InvalidRecordError("the record does not meet the topic's schema")
    for n in range(30):
        assert post_numbered(client, n, aid="666" if n % 2 else "1").status_code == 204
    settled(pipeline)
    assert numbers(fake) == list(range(0, 30, 2))
    [path] = (tmp_path / "spool" / "dead-letter").glob("*.jsonl")
    assert path.name == "events.666.jsonl"
    letters = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["value"]["properties"]["n"] for d in letters] == list(range(1, 30, 2))
    assert all("InvalidRecordError" in d["reason"] and d["event_id"] == d["value"]["event_id"] for d in letters)
    assert metric(client.get("/metrics").get_data(as_text=True), dead) - before == 15


def test_a_topic_that_keeps_failing_while_others_are_delivered_is_dead_lettered(make_app, tmp_path):
    client, pipeline = started(make_app(COLLECTOR_DEAD_LETTER_AFTER_MS=1000))
    fake = pipeline.sender.producer
    fake.refuse["events.7"] = KafkaTimeoutError("no leader for ever")  # retriable, but it never mends
    for n in range(10):
        assert post_numbered(client, n, aid="7").status_code == 204
    others = iter(range(100, 10_000))

    def others_flow() -> list[object]:  # account 1's events keep coming and being delivered
        assert post_numbered(client, next(others), aid="1").status_code == 204
        return list((tmp_path / "spool" / "dead-letter").glob("events.7.jsonl"))

    wait_until(others_flow, what="dead letters")
    settled(pipeline)
    assert numbers(fake) == list(range(100, next(others)))
    letters = (tmp_path / "spool" / "dead-letter" / "events.7.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["value"]["properties"]["n"] for line in letters) == list(range(10))
    assert "failing for" in json.loads(letters[0])["reason"]


def test_when_all_of_kafka_fails_nothing_is_dead_lettered(make_app, tmp_path):
    client, pipeline = started(make_app(COLLECTOR_DEAD_LETTER_AFTER_MS=1000))
    fake = pipeline.sender.producer
    fake.mode, fake.error = "fail", KafkaTimeoutError("Kafka is away")
    for n in range(10):
        assert post_numbered(client, n, aid=str(1 + n % 2)).status_code == 204
    wait_until(lambda: all(lane.attempts >= 4 for lane in pipeline.sender.lanes.by_topic.values()), what="long failure")
    fake.mode = "ok"
    settled(pipeline)
    assert sorted(numbers(fake, "events.1") + numbers(fake, "events.2")) == list(range(10))
    assert not (tmp_path / "spool" / "dead-letter").exists()


def test_a_failing_topic_that_fills_the_memory_bound_is_dead_lettered_and_the_others_go_on(make_app, tmp_path):
    client, pipeline = started(make_app(COLLECTOR_MAX_PENDING=20, COLLECTOR_KAFKA_DELIVERY_TIMEOUT_MS=3000))
    fake = pipeline.sender.producer
    fake.refuse["events.7"] = KafkaTimeoutError("no leader")  # retriable, and it goes on
    for n in range(30):
        assert post_numbered(client, n, aid="7").status_code == 204
    for n in range(100, 110):
        assert post_numbered(client, n, aid="1").status_code == 204  # behind the bound, in the log
    letters = tmp_path / "spool" / "dead-letter" / "events.7.jsonl"
    wait_until(letters.exists, what="the failing topic's events dead-lettered")
    assert "held back while the collector's memory bound (20 events) was full" in letters.read_text()
    wait_until(lambda: numbers(fake) == list(range(100, 110)), what="the other account's events delivered")


def fake_lanes(spool: Path, **env: object) -> Lanes:
    """Lanes on a fake producer, driven pass by pass at the times a test gives."""
    settings = Settings.from_env({"COLLECTOR_SPOOL_DIR": str(spool), **{k: str(v) for k, v in env.items()}})
    lanes = Lanes(settings, spool, Topics(FakeKafkaAdmin, {}, 1, 1))
    lanes.reset(FakeKafkaProducer())
    return lanes


def one_pass(lanes: Lanes, now: float) -> None:
    """What the sender does with the lanes in one pass."""
    lanes.settle(now)
    lanes.send(now)
    lanes.watch(now, lanes.full, now)


@pytest.mark.parametrize(("path", "error"), [
    ("send raises", MessageSizeTooLargeError("too large")),  # refused before it leaves
    ("delivery fails", InvalidRecordError("refused by the topic's schema")),  # refused by Kafka
    ("failing too long", KafkaTimeoutError("no leader for ever")),  # retriable, never mends
])
def test_dead_letters_the_disk_cannot_take_wait_and_are_tried_again_after_a_back_off(tmp_path, fake_cluster,
                                                                                      monkeypatch, path, error):
    lanes = fake_lanes(tmp_path, COLLECTOR_DEAD_LETTER_AFTER_MS=1000)
    if path == "send raises":
        lanes.producer.raise_on_send = error
    else:
        lanes.producer.refuse["events.7"] = error
    tries: list[int] = []

    def disk_full(spool: Path, records: list[object], reason: str, most: int | None = None) -> bool:
        tries.append(len(records))
        if len(tries) > 50:  # what it did before: the same record taken again and again in one pass
            raise AssertionError("the sender loops on a dead letter it cannot write")
        return False

    monkeypatch.setattr(deadletter, "bury", disk_full)
    for seq in range(3):
        lanes.add(Entry(seq, None, 0, log_record(seq, "events.7")))  # type: ignore[arg-type]
    for n in range(100):  # five seconds of passes
        if path == "failing too long":  # account 1's events are delivered meanwhile
            lanes.add(Entry(100 + n, None, 0, log_record(100 + n)))  # type: ignore[arg-type]
        one_pass(lanes, 1000 + n * 0.05)
    lanes.settle(1005)
    assert 1 <= len(tries) <= 10  # a try, then fewer and fewer: not one a pass
    assert (lanes.held, deadletter.count(tmp_path)) == (3, 0)  # kept, in memory and in the log
    monkeypatch.undo()  # the disk has room again
    for n in range(100, 300):
        one_pass(lanes, 1000 + n * 0.05)
    assert (lanes.held, deadletter.count(tmp_path)) == (0, 3)
    letters = [json.loads(line) for line in (tmp_path / "dead-letter" / "events.7.jsonl").read_text().splitlines()]
    assert sorted(d["value"]["n"] for d in letters) == [0, 1, 2]


def test_producers_replaced_while_kafka_hangs_leave_nothing_open(tmp_path):
    with SilentBroker() as silent:
        configs = silent.configs()
        before = kafka_resources()
        lanes = Lanes(Settings.from_env({}), tmp_path, Topics(KAFKA.admin, configs, 1, 1))
        for seq in range(5):
            lanes.reset(KAFKA.producer(**configs))  # closes the one before, its metadata request unanswered
            lanes.add(Entry(seq, None, 0, log_record(seq)))  # type: ignore[arg-type]
            one_pass(lanes, time.monotonic())  # the producer asks for the topic's metadata
            assert lanes.held == 1 and not lanes.delivered
        lanes.close()
        assert left_open(before) == (0, 0)


def largest(lanes: Lanes) -> int:
    """The size of the largest collection the lanes or their Topics hold."""
    held = [*vars(lanes).values(), *vars(lanes.topics).values()]
    return max(len(c) for c in held if isinstance(c, (set, dict, deque)) and c is not lanes.topics.configs)


def test_accounts_each_seen_once_leave_nothing_behind_in_memory(tmp_path, fake_cluster, monkeypatch):
    fake_cluster.only_created = True  # a topic is there once created: each is checked and created
    lanes = fake_lanes(tmp_path)
    lanes.topics.IDLE_S = 5.0
    lanes.producer.refuse = {f"events.{n}": InvalidRecordError("refused") for n in range(0, 3000, 100)}
    forgotten: set[str] = set()
    monkeypatch.setattr(lanes_module, "forget_topics", lambda producer, topics: forgotten.update(topics))
    sizes = []
    for n in range(0, 3000, 5):  # five new accounts a pass, each with one event
        for aid in range(n, n + 5):
            lanes.add(Entry(aid, None, 0, log_record(aid, f"events.{aid}")))  # type: ignore[arg-type]
        one_pass(lanes, 1000 + n / 100)
        sizes.append(largest(lanes))
    for n in range(200):  # ten quiet seconds
        one_pass(lanes, 1030 + n / 20)
    topics = {f"events.{aid}" for aid in range(3000)}
    assert {t for t, _, _ in lanes.producer.sent} | set(lanes.producer.refuse) == topics
    assert deadletter.count(tmp_path) == 30 and lanes.held == 0
    assert max(sizes) < 800 and largest(lanes) == 0  # it grew to 3,000 before
    assert forgotten == topics  # the producer was told to forget each (its metadata held 3,000)


def test_the_dead_letters_bound_is_the_apps_setting(make_app, monkeypatch):
    monkeypatch.setenv("COLLECTOR_DEAD_LETTER_MAX_BYTES", str(9 * 1024**2))  # the environment is not what counts
    _, pipeline = started(make_app(COLLECTOR_DEAD_LETTER_MAX_BYTES=3 * 1024**2))
    assert pipeline.sender.lanes.dead_letters.most == 3 * 1024**2
