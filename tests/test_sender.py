"""The sender (app/sender.py), against a fake producer: it resumes a gone worker's log from the
acknowledged position, replaces a broken producer, and with one sender per host, one worker
sends for all and another takes over."""
from __future__ import annotations

import json
import os
import threading
import time

from kafka.errors import IllegalStateError

from app import segment as segment_module
from app.delivery import get_pipeline
from app.election import Election
from app.log import Log
from app.segment import HEADER, Record, encode_write, segments
from tests.helpers import metric, numbered, numbers, post_numbered, settled, started, wait_until


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
    [segment] = (tmp_path / "spool").glob("*.wal")
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


LOST = 'collector_events_total{outcome="lost"}'


def left_by_a_gone_worker(spool, batches: list[list[int]]):
    """A segment a gone worker left in ``spool``, one write per batch of event numbers, and each write's offset."""
    writer = Log(str(spool), 1 << 30, 1 << 24, shared=True)
    offsets = []
    for batch in batches:
        offsets.append(writer._current.size if writer._current else len(HEADER))
        writer.append([Record("events.1", b"i", json.dumps({"properties": {"n": n}}).encode(), time.time())
                       for n in batch])
    writer.seal()
    return segments(spool)[-1], offsets


def test_one_flipped_byte_costs_one_event_and_is_counted_once_a_torn_tail_costs_none(make_app, tmp_path):
    spool = tmp_path / "spool"
    damaged, offsets = left_by_a_gone_worker(spool, [[n] for n in range(100)])
    fd = os.open(damaged, os.O_WRONLY)
    os.pwrite(fd, b"\xff", offsets[50] + 20)  # inside event 50's record
    os.close(fd)
    torn, _ = left_by_a_gone_worker(spool, [[n] for n in range(100, 110)])
    with open(torn, "ab") as file:  # a worker killed mid-write: that request got no 204
        file.write(encode_write([Record("events.1", b"i", b'{"properties": {"n": 999}}')])[:-4])
    app = make_app()
    before = app.test_client().get("/metrics").get_data(as_text=True)
    client, pipeline = started(app)
    settled(pipeline)
    after = client.get("/metrics").get_data(as_text=True)
    assert numbers(pipeline.sender.producer) == [n for n in range(110) if n != 50]
    assert metric(after, LOST) - metric(before, LOST) == 1
    assert segments(spool) == []


def test_a_worker_that_is_not_the_sender_is_never_held_to_what_it_took_over_its_life(make_app):
    apps = [make_app(COLLECTOR_SENDER="host", COLLECTOR_SPOOL_MAX_BYTES=1024**2, COLLECTOR_MAX_BODY_BYTES=900 * 1024)
            for _ in range(2)]
    pipelines = [started(app)[1] for app in apps]
    elected = wait_until(lambda: next((p for p in pipelines if p.sender.elected), None), what="one elected")
    appender = apps[1 - pipelines.index(elected)]
    client, pipeline = appender.test_client(), get_pipeline(appender)
    for batch in range(17):  # 12 MiB in all, 12 times the maximum, delivered as it goes
        events = [numbered(batch * 100 + i, pad="x" * 8000) for i in range(90)]
        assert client.post("/collect/1/1/events", json=events).get_json()["accepted"] == 90
        settled(elected)
        for _ in range(2):  # a round of its own sender thread that began after the delivery: it counts again
            since = time.monotonic()
            wait_until(lambda since=since: pipeline.sender.beat > since, what="the appender's count")
    assert not pipeline.sender.elected and pipeline.log.held < 64 * 1024


def test_every_workers_readiness_says_so_when_the_hosts_sender_is_stuck(make_app, monkeypatch):
    first, second = make_app(COLLECTOR_SENDER="host"), make_app(COLLECTOR_SENDER="host")
    (_, one), (_, two) = started(first), started(second)
    elected = wait_until(lambda: next((p for p in (one, two) if p.sender.elected), None), what="one elected")
    other = two if elected is one else one
    wait_until(lambda: other.unready() is None and elected.unready() is None, what="both ready")
    stuck = threading.Event()
    monkeypatch.setattr(elected.sender.lanes, "settle", lambda now: stuck.wait(30))  # a pass that never ends
    why = wait_until(other.unready, timeout=20, what="the other worker unready")
    stuck.set()
    assert "the sender has not run for" in why


def test_an_io_error_reading_the_log_neither_kills_the_sender_nor_loses_the_events(make_app, monkeypatch):
    client, pipeline = started(make_app())
    pipeline.sender.producer.mode = "hold"
    assert post_numbered(client, 0).status_code == 204
    settled_once = pipeline.sender.passes + 2
    wait_until(lambda: pipeline.sender.passes > settled_once, what="the first read")

    def eio(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(segment_module.os, "pread", eio)
    for n in range(1, 4):
        assert post_numbered(client, n).status_code == 204
    done = pipeline.sender.passes + 3
    wait_until(lambda: pipeline.sender.passes > done, what="passes over the unreadable log")
    monkeypatch.undo()
    pipeline.sender.producer.release()
    settled(pipeline)
    assert numbers(pipeline.sender.producer) == [0, 1, 2, 3]
    assert pipeline.supervisor.problem() is None  # the sender thread never died


def test_a_hosts_sender_that_dies_without_resigning_shows_in_every_workers_readiness(make_app, tmp_path):
    _, worker = started(make_app(COLLECTOR_SENDER="process"))
    first = Election(tmp_path / "spool")  # as a sender process would: elected, and noting its beat
    assert first.won()
    first.publish(time.monotonic(), 0, pid=4001)
    wait_until(lambda: worker.sender.election.sender == 4001, what="the worker reads the sender's state")
    os.close(first.fd)  # killed: the lock is free, nothing said
    second = Election(tmp_path / "spool")
    assert second.won()
    second.publish(time.monotonic(), 0, pid=4002)
    why = wait_until(worker.unready, what="the worker unready")
    assert "the host's sender (pid 4001) died; pid 4002 took over" in why
    second.resign()
