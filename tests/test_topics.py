"""Account topics (app/topics.py): created before their first event, and again when they vanish;
without a broker, tried again."""
from __future__ import annotations

from typing import Any

from kafka.errors import UnknownTopicOrPartitionError

from app.kafka_client import KAFKA
from app.topics import Topics
from tests.fakes import FakeKafkaAdmin, SilentBroker, kafka_resources, left_open
from tests.helpers import first_seen, numbers, post_numbered, settled, started, wait_until


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


def test_topics_are_created_in_one_request_with_their_settings_and_known_after(fake_cluster):
    topics = Topics(FakeKafkaAdmin, {}, 3, 1)
    topics.ensure(["events.1", "events.2"])
    assert ("events.1" in topics, "events.2" in topics) == (True, True)
    assert fake_cluster.topics == {"events.1": (3, 1), "events.2": (3, 1)}
    topics.forget("events.1")  # it may have vanished
    assert ("events.1" in topics, "events.2" in topics) == (False, True)


class NoBroker:
    """An admin client that cannot reach Kafka."""

    def __init__(self, **configs: object) -> None:
        raise ConnectionRefusedError("no broker")


def test_without_a_broker_no_topic_is_known_and_creating_it_is_tried_again(fake_cluster, caplog):
    topics = Topics(NoBroker, {}, 3, 1)
    topics.ensure(["events.1"])
    assert "events.1" not in topics
    assert "1 topic not checked (ConnectionRefusedError('no broker')); the events wait" in caplog.text
    topics.admin_factory = FakeKafkaAdmin  # the broker is back
    wait_until(lambda: topics.ensure(["events.1"]) or "events.1" in topics, what="the topic created")
    assert fake_cluster.topics == {"events.1": (3, 1)}


def test_topic_checks_a_hung_kafka_never_answers_leave_nothing_open(caplog):
    with SilentBroker() as silent:
        before = kafka_resources()
        made = []

        def admin(**configs: Any) -> Any:
            made.append(configs)
            return KAFKA.admin(**configs)

        topics = Topics(admin, silent.configs(), 3, 1)
        for n in range(10):
            topics.ensure([f"events.{n}"])
            assert f"events.{n}" not in topics
        topics.close()
        assert len(made) == 10, "an admin client a try"
        assert caplog.text.count('1 topic not checked (KafkaTimeoutError("Unable to bootstrap') == 1, "once a minute"
        assert left_open(before) == (0, 0)  # it was 3 descriptors and a thread each


class CountingAdmin(FakeKafkaAdmin):
    """The fake admin client, counting the topics it is asked to create."""

    asked: list[str] = []

    def create_topics(self, new_topics: list[Any], raise_errors: bool = True) -> dict[str, Any]:
        self.asked.extend(t.name for t in new_topics)
        return super().create_topics(new_topics, raise_errors)


def test_a_topic_idle_for_long_is_forgotten_and_checked_anew_when_it_comes_back(fake_cluster):
    CountingAdmin.asked = []
    topics = Topics(CountingAdmin, {}, 3, 1)
    topics.ensure(["events.1", "events.2", "events.3"])
    topics.idle(["events.1", "events.2"], 1000.0)  # their lanes have nothing to send from now
    assert topics.expired(1000.0 + topics.IDLE_S, active=set()) == set()  # not idle long enough
    assert topics.expired(2000.0, active={"events.2"}) == {"events.1"}  # events.2 has events again
    assert [t in topics for t in ("events.1", "events.2", "events.3")] == [False, True, True]
    topics.idle(["events.3"], 2000.0)
    # events.2 is not idle again until its lane says so
    assert topics.expired(2001.0 + topics.IDLE_S, active=set()) == {"events.3"}
    topics.ensure(["events.1"])
    assert CountingAdmin.asked == ["events.1", "events.2", "events.3", "events.1"]
    assert "events.1" in topics


def test_many_new_topics_are_created_a_bounded_number_a_request_each_in_its_turn(fake_cluster, monkeypatch):
    requests: list[int] = []

    class Counting(FakeKafkaAdmin):
        def create_topics(self, new_topics: list[Any], raise_errors: bool = True) -> dict[str, Any]:
            requests.append(len(new_topics))
            return super().create_topics(new_topics, raise_errors)

    topics = Topics(Counting, {}, 1, 1)
    wanted = [f"events.{n}" for n in range(450)]
    clock = iter(range(0, 100, 2))  # a pass every 2 s: past the least time between two tries
    monkeypatch.setattr("app.topics.time.monotonic", lambda: float(next(clock)))
    while not all(t in topics for t in wanted):
        topics.ensure(wanted)
    assert requests == [Topics.MOST, Topics.MOST, 50]
