"""The drain command (app/drain.py): what a gone collector left in its spool, and the dead
letters once asked, are delivered; the exit status says whether anything is left."""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from app import deadletter, drain
from app.kafka_client import Clients
from app.segment import Record
from tests.fakes import FAKE_KAFKA, FakeKafkaAdmin, FakeKafkaProducer
from tests.helpers import ROOT, log_record

LEAVE = """
import sys
from app.log import Log
from tests.helpers import log_record
Log(sys.argv[1], 1 << 30, 1 << 20).append([log_record(i) for i in range(5)])
"""


@pytest.fixture
def spool(tmp_path, monkeypatch, fake_cluster):
    """The spool directory the command is told of, as the collector is: through the environment."""
    spool = tmp_path / "spool"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("COLLECTOR_SPOOL_DIR", str(spool))
    return spool


@pytest.fixture
def producers() -> list[FakeKafkaProducer]:
    """The fake producers the command made, in order."""
    return []


@pytest.fixture
def clients(producers) -> Clients:
    """FAKE_KAFKA, but the producers it makes are kept in ``producers``."""
    def producer(**configs: Any) -> FakeKafkaProducer:
        producers.append(FakeKafkaProducer(**configs))
        return producers[-1]

    return Clients(producer, FakeKafkaAdmin)


def leave_a_segment(spool) -> None:
    """A collector appends five records to its log and is gone (its lock goes with it)."""
    subprocess.run([sys.executable, "-c", LEAVE, str(spool)], cwd=ROOT, check=True, timeout=60)


def test_the_log_of_a_gone_collector_is_delivered(spool, clients, producers, capsys):
    leave_a_segment(spool)
    [segment] = spool.glob("*.log")
    assert drain.main(["--timeout", "10"], clients=clients) == 0
    [producer] = producers
    assert producer.sent == [(r.topic, r.key, r.value) for r in map(log_record, range(5))]
    assert not segment.exists()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "log: 5 events delivered from 1 segments; 0 segments left"
    assert out[1].startswith("dead letters: 0 delivered, 0 left in ")


def test_what_kafka_does_not_take_stays_in_the_log_and_the_status_says_so(spool, capsys):
    leave_a_segment(spool)

    def stalled(**configs: Any) -> FakeKafkaProducer:
        producer = FakeKafkaProducer(**configs)
        producer.mode = "hold"  # never answers
        return producer

    assert drain.main(["--timeout", "0.5"], clients=Clients(stalled, FakeKafkaAdmin)) == 1
    assert len(list(spool.glob("*.log"))) == 1  # for the next try
    assert "; 1 segments left (a running collector holds them, or Kafka did not take them)" in capsys.readouterr().out


def test_dead_letters_are_sent_again_only_when_asked(spool, clients, producers, capsys):
    letters = [Record("events.2", b"k%d" % n, json.dumps({"event_id": f"e{n}", "n": n}).encode()) for n in range(3)]
    deadletter.write(spool, letters, "InvalidRecordError()")
    assert drain.main(["--timeout", "5"], clients=clients) == 1  # the dead letters are left
    assert deadletter.count(spool) == 3
    assert producers[-1].sent == []
    assert drain.main(["--dead-letters", "--timeout", "5"], clients=clients) == 0
    assert deadletter.count(spool) == 0
    assert [(t, k, json.loads(v)) for t, k, v in producers[-1].sent] == [
        ("events.2", b"k%d" % n, {"event_id": f"e{n}", "n": n}) for n in range(3)]
    assert "dead letters: 3 delivered, 0 left in " in capsys.readouterr().out


def test_a_bad_setting_stops_it_with_status_2(spool, monkeypatch, capsys):
    monkeypatch.setenv("COLLECTOR_SPOOL_MAX_BYTES", "0")
    assert drain.main([], clients=FAKE_KAFKA) == 2
    assert capsys.readouterr().err.startswith("cannot start: COLLECTOR_SPOOL_MAX_BYTES must be between")
