"""The drain command (app/drain.py): what a gone collector left in its spool, and the dead
letters once asked, are delivered; the exit status says whether anything is left."""
from __future__ import annotations

import configparser
import importlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from app import deadletter, drain
from app.election import Election
from app.kafka_client import Clients
from app.log import Log
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
    [segment] = spool.glob("*.wal")
    assert drain.main(["--timeout", "10"], clients=clients) == 0
    [producer] = producers
    assert producer.sent == [(r.topic, r.key, r.value) for r in map(log_record, range(5))]
    assert not segment.exists()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "log: 5 events delivered from 1 segment; 0 segments left"
    assert out[1].startswith("dead letters: 0 delivered, 0 left in ")


def test_what_kafka_does_not_take_stays_in_the_log_and_the_status_says_so(spool, capsys):
    leave_a_segment(spool)

    def stalled(**configs: Any) -> FakeKafkaProducer:
        producer = FakeKafkaProducer(**configs)
        producer.mode = "hold"  # never answers
        return producer

    assert drain.main(["--timeout", "0.5"], clients=Clients(stalled, FakeKafkaAdmin)) == 1
    assert len(list(spool.glob("*.wal"))) == 1  # for the next try
    assert "; 1 segment left (a running collector holds them, or Kafka did not take them)" in capsys.readouterr().out


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


@pytest.mark.parametrize("fault", ["hold", "raise"], ids=["kafka-stalled", "send-refuses"])
def test_dead_letters_kafka_does_not_take_are_kept_and_the_status_says_so(spool, capsys, fault):
    deadletter.write(spool, [log_record(n, "events.2") for n in range(3)], "InvalidRecordError()")

    def failing(**configs: Any) -> FakeKafkaProducer:
        producer = FakeKafkaProducer(**configs)
        producer.mode = "hold" if fault == "hold" else "ok"
        producer.raise_on_send = KafkaTimeoutError("no metadata") if fault == "raise" else None
        return producer

    assert drain.main(["--dead-letters", "--timeout", "0.5"], clients=Clients(failing, FakeKafkaAdmin)) == 1
    assert deadletter.count(spool) == 3
    assert "dead letters: 0 delivered, 3 left in " in capsys.readouterr().out


def test_a_bad_setting_stops_it_with_status_2(spool, monkeypatch, capsys):
    monkeypatch.setenv("COLLECTOR_SPOOL_MAX_BYTES", "0")
    assert drain.main([], clients=FAKE_KAFKA) == 2
    assert capsys.readouterr().err.startswith("cannot start: COLLECTOR_SPOOL_MAX_BYTES must be between")


def test_segments_a_running_process_holds_are_left_to_it(spool, clients, producers, monkeypatch, capsys):
    monkeypatch.setenv("COLLECTOR_SENDER", "host")  # the collector's; the command sends as one of its own
    live = Log(str(spool), 1 << 30, 1 << 20, shared=True)  # a running worker, its segment open and locked
    live.append([log_record(i) for i in range(5)])
    [segment] = spool.glob("*.wal")
    try:
        assert drain.main(["--timeout", "0.5"], clients=clients) == 1
    finally:
        live.seal()  # the worker lets go of it
    assert [p.sent for p in producers] == [[]]
    assert segment.exists() and not list(spool.glob("*.ack"))
    assert "0 events delivered from 0 segments; 1 segment left (a running collector holds them" in (
        capsys.readouterr().out)


def test_it_will_not_start_while_a_running_collectors_sender_holds_the_directory(spool, clients, producers, capsys):
    leave_a_segment(spool)
    running = Election(spool)
    assert running.won()
    try:
        assert drain.main(["--dead-letters"], clients=clients) == 2
    finally:
        running.resign()
    assert producers == []  # Kafka was not even asked
    assert len(list(spool.glob("*.wal"))) == 1
    assert capsys.readouterr().err.startswith(f"cannot start: a running collector holds {spool} (its sender holds "
                                              "sender.lock) and delivers it itself")


def test_a_collector_started_meanwhile_waits_for_it_to_end(spool, producers):
    leave_a_segment(spool)
    elected: list[bool] = []

    def producer(**configs: Any) -> FakeKafkaProducer:
        starting = Election(spool)
        elected.append(starting.won())
        starting.resign()
        producers.append(FakeKafkaProducer(**configs))
        return producers[-1]

    assert drain.main(["--timeout", "10"], clients=Clients(producer, FakeKafkaAdmin)) == 0
    assert elected == [False]
    after = Election(spool)
    assert after.won()
    after.resign()


@pytest.mark.parametrize("make, message", [
    (lambda spool: None, "the spool directory {spool} does not exist (COLLECTOR_SPOOL_DIR)"),
    (lambda spool: spool.write_text("events"), "the spool directory {spool} is not a directory (COLLECTOR_SPOOL_DIR)"),
    (lambda spool: (spool.mkdir(), (spool / "notes.txt").write_text(""), (spool / "2024").mkdir()),
     "{spool} is not a collector's spool directory: it holds 2024, notes.txt (COLLECTOR_SPOOL_DIR)"),
    (lambda spool: (spool.mkdir(), (spool / "dead-letter").write_text("")),
     "{spool} is not a collector's spool directory: it holds a file named dead-letter (COLLECTOR_SPOOL_DIR)"),
], ids=["missing", "a-file", "other-files", "dead-letter-a-file"])
def test_a_directory_that_is_not_a_spool_stops_it_with_status_2(spool, clients, producers, capsys, make, message):
    make(spool)
    before = sorted(spool.iterdir()) if spool.is_dir() else None
    assert drain.main([], clients=clients) == 2
    assert capsys.readouterr().err == "cannot start: " + message.format(spool=spool) + "\n"
    assert producers == []
    assert (sorted(spool.iterdir()) if spool.is_dir() else None) == before  # nothing made there


def test_an_empty_directory_or_one_of_only_the_collectors_files_is_a_spool(spool, clients, capsys):
    spool.mkdir()
    assert drain.main([], clients=clients) == 0
    for name in ("00000000000000000001-7.wal.ack", ".00000000000000000002-7.wal.tmp", ".probe-7", "sequence"):
        (spool / name).write_text("")
    deadletter.write(spool, [log_record(1)], "refused")
    assert drain.main(["--dead-letters"], clients=clients) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("dead letters: 1 delivered, 0 left in ")


def test_a_missing_spool_directory_fails_before_kafka_is_asked(tmp_path):
    missing = tmp_path / "no-such-spool"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "COLLECTOR_SPOOL_DIR": str(missing)}
    out = subprocess.run([sys.executable, "-m", "app.drain", "--timeout", "60"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr == f"cannot start: the spool directory {missing} does not exist (COLLECTOR_SPOOL_DIR)\n"
    assert out.stdout == "" and not missing.exists()


def test_help_names_the_environment_it_reads():
    out = subprocess.run([sys.executable, "-m", "app.drain", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: collector-drain [-h] [--dead-letters]")
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "COLLECTOR_SPOOL_DIR", "COLLECTOR_TOPIC_PARTITIONS"):
        assert f"\n  {variable} " in out.stdout
    assert "(default 127.0.0.1:9092)" in out.stdout and "(default spool)" in out.stdout


def test_the_installed_command_is_the_drain():
    """setup.cfg's console script: after make install, .venv/bin/collector-drain is this command."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].split()
    module, function = lines[lines.index("collector-drain") + 2].split(":")  # name = module:function
    assert getattr(importlib.import_module(module), function) is drain.main
