"""The live debugger's reading of Kafka (app/readback.py): the tail of each partition counted by
reading, which records are a tracker's, one read per host, and a time bound that holds against a
broker that never answers."""
from __future__ import annotations

import os
import re
import time

import pytest

from app.config import Settings
from app.kafka_client import KAFKA
from app.readback import BUDGET_S, Busy, Found, Match, consumer_configs, start, tail, take_lock
from tests.fakes import FakeKafkaConsumer, SilentBroker, kafka_resources, left_open
from tests.helpers import wait_until


def records(count: int) -> list[tuple[int, bytes, bytes]]:
    return [(1_700_000_000_000 + n, b"k", b'{"n": %d}' % n) for n in range(count)]


@pytest.mark.parametrize(("held", "end_short", "scan", "read"), [
    (10, 0, 4, [6, 7, 8, 9]),
    (10, 3, 4, [6, 7, 8, 9]),  # end offsets one batch short, as the embedded broker's: read to the true end
    (10, 10, 4, [6, 7, 8, 9]),  # an end offset of 0 on a partition that holds records
    (3, 0, 4, [0, 1, 2]),
    (0, 0, 4, []),
])
def test_the_tail_is_the_last_records_of_each_partition_up_to_the_true_end(fake_cluster, held, end_short, scan, read):
    FakeKafkaConsumer.topics = {"t": {0: records(held), 1: records(2)}}
    FakeKafkaConsumer.end_short = end_short
    got = tail(FakeKafkaConsumer(), "t", {0, 1}, scan, time.monotonic() + 10)
    assert [r.offset for r in got if r.partition == 0] == read
    assert [r.offset for r in got if r.partition == 1] == [0, 1]


def test_a_tail_past_its_deadline_stops(fake_cluster):
    FakeKafkaConsumer.topics = {"t": {0: records(3)}}
    with pytest.raises(TimeoutError):
        tail(FakeKafkaConsumer(), "t", {0}, 4, time.monotonic() - 1)


@pytest.mark.parametrize(("value", "shown"), [
    ({"aid": "7", "tid": "1"}, True),
    ({"aid": "007", "tid": "01"}, True),  # as sent: the key was "007", the page's account is 7
    ({"aid": "7", "tid": "2"}, False),
    ({"aid": "70", "tid": "1"}, False),
    ({"aid": 7, "tid": 1}, False),
    ({"aid": "seven", "tid": "1"}, False),
    ({"tid": "1"}, False),
    (["7", "1"], False),
    ("not an object", False),
    (None, False),
])
def test_a_reject_is_the_trackers_by_its_ids_in_their_one_spelling(value, shown):
    assert Match("7", "1").reject(value) is shown


def test_a_uuid_account_matches_in_any_case():
    account = "0b0e7c2a-3f4d-4e5f-8a9b-0c1d2e3f4a5b"
    assert Match(account, "1").reject({"aid": account.upper(), "tid": "1"})
    assert Match(account, "1").event({"account_id": account, "tracker_id": "1"})
    assert not Match(account, "1").event({"account_id": account, "tracker_id": "2"})


def test_the_hosts_lock_is_held_by_one_read_at_a_time(tmp_path):
    first = take_lock(str(tmp_path))
    with pytest.raises(Busy):
        take_lock(str(tmp_path))
    os.close(first)
    os.close(take_lock(str(tmp_path)))


def test_a_read_that_has_not_finished_says_so():
    found = Found()
    found.put("events", [])
    assert found.taken(0.01) == ([], None, f"Kafka did not answer within {BUDGET_S:g} s")
    found.done.set()
    assert found.taken(0.01) == ([], None, None)


def test_the_consumer_joins_no_group_and_never_waits_on_a_bootstrap():
    configs = consumer_configs(Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092"}))
    assert configs["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert (configs["group_id"], configs["enable_auto_commit"]) == (None, False)
    assert configs["api_version"] is not None
    assert configs["fetch_max_wait_ms"] < configs["request_timeout_ms"]


def test_a_broker_that_never_answers_is_a_read_within_its_budget_that_leaves_nothing_behind(tmp_path):
    """The real kafka-python consumer against a hung broker: the request gets its answer at the
    budget, and the reader, its consumer and the host's lock are gone soon after."""
    before = kafka_resources()
    with SilentBroker() as broker:
        settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": broker.servers, "COLLECTOR_SPOOL_DIR": str(tmp_path)})
        found = start(settings, KAFKA.consumer, "1", "1")
        events, rejects, error = found.taken(BUDGET_S + 0.2)
        assert (events, rejects) == (None, None)
        assert re.fullmatch(r"Kafka did not answer within 1 s|cannot read Kafka: KafkaTimeoutError: Timed out after "
                            r"\d+ ms", error or ""), error
        wait_until(found.done.is_set, timeout=15, what="the reader thread's end")
        os.close(take_lock(str(tmp_path)))  # let go
    assert left_open(before) == (0, 0)
