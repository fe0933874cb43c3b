"""Account topics (app/topics.py): created before their first event, and again when they vanish."""
from __future__ import annotations

from kafka.errors import UnknownTopicOrPartitionError

from tests.fakes import FakeKafkaAdmin
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
