"""The sender (app/sender.py), against a fake producer: it resumes a gone worker's log from the
acknowledged position, replaces a broken producer, and with one sender per host, one worker
sends for all and another takes over."""
from __future__ import annotations

from kafka.errors import IllegalStateError

from tests.helpers import numbers, post_numbered, settled, started, wait_until


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
