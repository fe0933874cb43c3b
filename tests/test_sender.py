"""From the log to Kafka, against a fake producer: order, isolation per topic, dead letters,
resuming from the acknowledged position, supervised threads, readiness."""
from __future__ import annotations

import ctypes
import json
import logging

from kafka.errors import IllegalStateError, InvalidRecordError, KafkaTimeoutError, UnknownTopicOrPartitionError

from app import deadletter
from app.log import Log
from app.segment import Record, records_in
from tests.fakes import FakeKafkaAdmin
from tests.helpers import first_seen, numbers, post_numbered, settled, started, wait_until


def test_every_204_is_on_disk_before_the_answer(make_app, tmp_path):
    client, pipeline = started(make_app())
    pipeline.sender.producer.mode = "hold"  # Kafka answers nothing
    for n in range(5):
        assert post_numbered(client, n).status_code == 204
    on_disk = Log(str(tmp_path / "other"), 1 << 30, 1 << 20)
    [segment] = pipeline.log.owned()

    assert [json.loads(r.value)["properties"]["n"] for _, r, _ in records_in(segment, 0)] == list(range(5))
    on_disk.adopt()
    assert on_disk.owned() == []  # and the worker holds it


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
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'collector_events_total{outcome="dead_letter"} 15.0' in metrics


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


def test_a_missing_or_vanished_topic_is_created_before_its_events_go(make_app):
    FakeKafkaAdmin.missing.add("events.1")
    client, pipeline = started(make_app(COLLECTOR_TOPIC_PARTITIONS=3))
    fake = pipeline.sender.producer
    assert post_numbered(client, 0).status_code == 204
    settled(pipeline)
    assert FakeKafkaAdmin.topics == {"events.1": (3, -1)}
    FakeKafkaAdmin.topics.clear()  # the broker lost it
    FakeKafkaAdmin.missing.add("events.1")
    fake.refuse["events.1"] = UnknownTopicOrPartitionError()
    assert post_numbered(client, 1).status_code == 204
    wait_until(lambda: FakeKafkaAdmin.topics, what="the topic created again")
    assert FakeKafkaAdmin.topics == {"events.1": (3, -1)}
    del fake.refuse["events.1"]
    settled(pipeline)
    assert first_seen(numbers(fake)) == [0, 1]


def test_a_new_worker_resumes_a_gone_workers_log_from_its_acknowledged_position(make_app, tmp_path):
    first = make_app(COLLECTOR_SHUTDOWN_FLUSH_MS=0)
    client, pipeline = started(first)
    fake = pipeline.sender.producer
    for n in range(5):
        assert post_numbered(client, n).status_code == 204
    settled(pipeline)
    fake.mode = "hold"
    for n in range(5, 10):
        assert post_numbered(client, n).status_code == 204
    wait_until(lambda: len(fake.held) == 5, what="in flight")
    pipeline.close()  # Kafka never answered those five: they stay in the log
    [segment] = (tmp_path / "spool").glob("*.log")
    _, next_pipeline = started(make_app())  # the next worker, on the same directory
    settled(next_pipeline)
    assert numbers(next_pipeline.sender.producer) == list(range(5, 10))  # not 0-4 again
    assert not segment.exists()


def test_a_broken_producer_is_replaced_and_nothing_is_lost(make_app):
    client, pipeline = started(make_app())
    broken = pipeline.sender.producer
    broken.raise_on_send = IllegalStateError("producer in a fatal state")
    for n in range(5):
        assert post_numbered(client, n).status_code == 204
    wait_until(lambda: pipeline.sender.producer is not broken, what="a new producer")
    assert broken.closed
    settled(pipeline)
    assert numbers(pipeline.sender.producer) == list(range(5))


def test_a_killed_sender_thread_is_logged_reported_and_started_again(make_app, caplog):
    client, pipeline = started(make_app(COLLECTOR_READY_MAX_AGE_MS=1000))
    assert post_numbered(client, 0).status_code == 204
    settled(pipeline)
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")
    thread = pipeline.supervisor.thread("sender")
    with caplog.at_level(logging.ERROR):
        kill = ctypes.pythonapi.PyThreadState_SetAsyncExc  # raises SystemExit inside that thread
        assert kill(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)) == 1
        answer = wait_until(lambda: (r := client.get("/readyz")).status_code == 503 and r.get_json(), what="unready")
    assert "the sender thread died (SystemExit()) and was restarted" in answer["reason"]
    assert "the sender thread died; it starts again" in caplog.text
    assert post_numbered(client, 1).status_code == 204
    settled(pipeline)
    assert first_seen(numbers(pipeline.sender.producer)) in ([0, 1], [1])  # 0 again only if its ack was not recorded
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready again")


def test_not_ready_before_kafka_first_answers(make_app, monkeypatch):
    def no_answer(self):
        raise TimeoutError("Kafka is away")

    monkeypatch.setattr(FakeKafkaAdmin, "describe_cluster", no_answer)
    client, pipeline = started(make_app(COLLECTOR_READY_MAX_AGE_MS=600_000))
    pipeline.sender.producer.mode = "hold"
    assert post_numbered(client, 0).status_code == 204
    answer = wait_until(lambda: "Kafka is away" in (client.get("/readyz").get_json().get("reason") or "")
                        and client.get("/readyz"), what="the probe's answer")
    assert answer.status_code == 503
    assert answer.get_json()["reason"].startswith("no answer from Kafka since this worker started")
    pipeline.sender.producer.release()  # the first acknowledgement
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready")


def test_dead_letters_are_sent_again_and_only_the_undelivered_kept(tmp_path):
    spool = tmp_path / "spool"
    records_ = [Record("events.1", b"k%d" % n, json.dumps({"event_id": f"e{n}", "n": n}).encode()) for n in range(4)]
    deadletter.write(spool, records_, "InvalidRecordError()")
    assert deadletter.resend(spool, lambda rs: [json.loads(r.value)["n"] % 2 == 0 for r in rs]) == (2, 2)
    kept = [json.loads(line) for line in (spool / "dead-letter" / "events.1.jsonl").read_text().splitlines()]
    assert [d["event_id"] for d in kept] == ["e1", "e3"]
    assert deadletter.resend(spool, lambda rs: [True] * len(rs)) == (2, 0)
    assert not list((spool / "dead-letter").iterdir())


def test_with_one_sender_per_host_one_worker_sends_for_all_and_another_takes_over(make_app):
    first, second = make_app(COLLECTOR_SENDER="host"), make_app(COLLECTOR_SENDER="host")
    (client1, pipe1), (client2, pipe2) = started(first), started(second)
    for n in range(10):
        assert post_numbered(first.test_client() if n % 2 else second.test_client(), n, instance="i").status_code == 204
    elected = wait_until(lambda: next((p for p in (pipe1, pipe2) if p.sender.producer is not None), None),
                         what="one sender elected")
    other = pipe2 if elected is pipe1 else pipe1
    wait_until(lambda: sorted(numbers(elected.sender.producer)) == list(range(10)), what="all ten sent")
    assert other.sender.producer is None  # never elected: it only appends
    elected.close()  # its worker exits: the other takes over within a second
    client = (client1, client2)[(pipe1, pipe2).index(other)]
    for n in range(10, 15):
        assert post_numbered(client, n, instance="i").status_code == 204
    wait_until(lambda: other.sender.producer is not None and numbers(other.sender.producer)[-5:] == list(range(10, 15)),
               what="the other worker sending")


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
