"""The outbox and its spool, against a fake Kafka producer: what a 204 promises."""
from __future__ import annotations

import json
import threading

import pytest
from kafka.errors import IllegalStateError

from app.config import ConfigError, from_env
from app.producer import producer, producer_configs
from app.spool import Record, Spool, encode

from .conftest import records, wait_until

EVENT = {"action": "view", "object": "form", "vendor": "V", "product": "P"}


def post(client, i, aid="1"):
    return client.post(f"/collect/{aid}/1/event", json={**EVENT, "instance_id": f"i{i}", "n": i})


def started(app):
    """The app's test client and its outbox, started (its producer is a fake)."""
    outbox = producer.outbox(app)
    outbox.start()
    return app.test_client(), outbox


def delivered_numbers(fake):
    return [r["value"]["properties"]["n"] for r in records(fake)]


def test_events_kafka_fails_are_spooled_and_replayed_in_order(make_app):
    client, outbox = started(make_app())
    fake = outbox._producer
    fake.mode = "hold"  # all in flight first: what arrives while Kafka fails may be spooled ahead
    for i in range(20):
        assert post(client, i).status_code == 204
    wait_until(lambda: len(fake.held) == 20, what="every event in flight")
    fake.fail_held()
    wait_until(lambda: outbox.pending == 0, what="every event failed and spooled")
    assert delivered_numbers(fake) == []
    fake.mode = "ok"
    wait_until(lambda: len(fake.sent) == 20, what="the spool replayed")
    assert delivered_numbers(fake) == list(range(20))
    wait_until(lambda: not outbox._spooling and not outbox.spool.files(), what="the spool drained")
    assert post(client, 20).status_code == 204
    wait_until(lambda: len(fake.sent) == 21, what="a direct send")
    assert delivered_numbers(fake) == list(range(21))


def test_past_the_pending_bound_events_go_to_disk_not_memory(make_app):
    client, outbox = started(make_app(COLLECTOR_MAX_PENDING=5))
    fake = outbox._producer
    fake.mode = "hold"  # a stalled broker: nothing is acknowledged
    for i in range(50):
        assert post(client, i).status_code == 204
    assert outbox.pending <= 5
    spooled = sum(len(p.read_bytes().splitlines()) for p in outbox.spool.files())
    assert spooled >= 45
    fake.release()
    wait_until(lambda: outbox.pending == 0 and not outbox.spool.files() and not outbox._spooling,
               what="the spool replayed")
    assert sorted(set(delivered_numbers(fake))) == list(range(50))


def test_spool_unwritable_and_outbox_full_answers_503_and_never_hangs(make_app, unwritable_spool):
    client, outbox = started(make_app(COLLECTOR_MAX_PENDING=3, COLLECTOR_SPOOL_DIR=unwritable_spool))
    outbox._producer.mode = "hold"
    statuses = [post(client, i).status_code for i in range(6)]
    assert statuses == [204, 204, 204, 503, 503, 503]
    response = post(client, 7)
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["code"] == 503
    assert body["message"].startswith("the event was not tracked: Kafka is not taking events now and "
                                      "the spool cannot keep them")


def test_with_the_spool_unwritable_failed_events_stay_in_memory_until_kafka_takes_them(make_app, unwritable_spool):
    client, outbox = started(make_app(COLLECTOR_MAX_PENDING=5, COLLECTOR_SPOOL_DIR=unwritable_spool))
    fake = outbox._producer
    fake.mode = "fail"
    statuses = [post(client, i).status_code for i in range(5)]
    wait_until(lambda: outbox._retry_at > 0, what="a failed delivery")
    statuses += [post(client, i).status_code for i in range(5, 10)]
    assert statuses == [204] * 5 + [503] * 5
    fake.mode = "ok"
    wait_until(lambda: len(fake.sent) == 5, what="the retries delivered")
    assert sorted(delivered_numbers(fake)) == list(range(5))
    assert post(client, 10).status_code == 204


def test_a_request_never_waits_on_the_broker(make_app):
    app = make_app()
    outbox = producer.outbox(app)
    outbox.start()
    release = threading.Event()
    blocked = threading.Event()
    fake = outbox._producer
    real_send = fake.send

    def stuck_send(*args, **kwargs):  # kafka-python's send blocks while it waits for metadata
        blocked.set()
        release.wait(30)
        return real_send(*args, **kwargs)

    fake.send = stuck_send
    answers = []
    worker = threading.Thread(target=lambda: answers.extend(post(app.test_client(), i).status_code
                                                            for i in range(3)))
    worker.start()
    worker.join(10)  # a guard against a hang, not a timing
    try:
        assert not worker.is_alive()
        assert answers == [204, 204, 204]
        wait_until(blocked.is_set, what="the sender thread stuck in send")
    finally:
        release.set()
    wait_until(lambda: len(fake.sent) == 3, what="delivery once the broker answers")


def test_a_broken_producer_is_replaced_and_nothing_is_lost(make_app):
    client, outbox = started(make_app())
    broken = outbox._producer
    broken.raise_on_send = IllegalStateError("producer in a fatal state")
    for i in range(5):
        assert post(client, i).status_code == 204
    wait_until(lambda: outbox._producer is not broken, what="a new producer")
    assert broken.closed
    wait_until(lambda: len(outbox._producer.sent) == 5, what="replay through the new producer")
    assert delivered_numbers(outbox._producer) == list(range(5))


def test_an_exiting_worker_spools_what_kafka_did_not_acknowledge_and_the_next_replays_it(make_app):
    first = make_app(COLLECTOR_SHUTDOWN_FLUSH_MS=100)
    outbox = producer.outbox(first)
    outbox.start()
    outbox._producer.mode = "hold"
    client = first.test_client()
    for i in range(10):
        assert post(client, i).status_code == 204
    wait_until(lambda: len(outbox._producer.held) == 10, what="all in flight")
    outbox.close()
    assert outbox.pending == 0
    assert len(outbox.spool.files()) == 1

    second = make_app()  # the next worker, on the same spool directory
    next_outbox = producer.outbox(second)
    next_outbox.start()
    wait_until(lambda: len(next_outbox._producer.sent) == 10, what="the next worker's replay")
    assert delivered_numbers(next_outbox._producer) == list(range(10))
    wait_until(lambda: not next_outbox.spool.files(), what="the spool file deleted")


def test_a_spool_file_is_claimed_by_one_replayer_at_a_time(tmp_path):
    writer, a, b = (Spool(str(tmp_path), 1 << 20) for _ in range(3))
    writer.append([Record("e1", "events.1", b"k", b'{"n":1}')])
    [path] = writer.files()
    assert a.claim(path) is None and b.claim(path) is None  # the writer holds it
    writer.rotate()
    claim = a.claim(path)
    assert claim is not None
    assert b.claim(path) is None
    assert [r for chunk in claim.chunks(10) for r in chunk] == [Record("e1", "events.1", b"k", b'{"n":1}')]
    claim.done()
    claim.release()
    assert b.claim(path) is None and not path.exists()


def test_a_torn_line_is_skipped_and_the_rest_replayed(tmp_path):
    good = [Record(f"e{i}", "events.1", b"k", b'{"n":%d}' % i) for i in range(3)]
    (tmp_path / "00000000000000000001-1.jsonl").write_bytes(
        encode(good[:2]) + b'{"event_id": "e9", "topi\n' + encode(good[2:]))
    spool = Spool(str(tmp_path), 1 << 20)
    claim = spool.claim(spool.files()[0])
    assert claim is not None
    assert [r for chunk in claim.chunks(2) for r in chunk] == good


def test_a_full_spool_answers_503(make_app):
    client, outbox = started(make_app(COLLECTOR_MAX_PENDING=1, COLLECTOR_SPOOL_MAX_BYTES=2000))
    outbox._producer.mode = "hold"
    statuses = [post(client, i).status_code for i in range(20)]
    assert statuses[:2] == [204, 204]
    assert 503 in statuses
    first_refused = statuses.index(503)
    assert set(statuses[first_refused:]) == {503}
    on_disk = {json.loads(line)["value"]["properties"]["n"]
               for p in outbox.spool.files() for line in p.read_bytes().splitlines()}
    in_flight = {json.loads(value)["properties"]["n"] for _, (_, _, value) in outbox._producer.held}
    assert on_disk | in_flight == set(range(first_refused))  # every 204 is on disk or with Kafka


def test_the_producer_batch_size_is_a_setting():
    assert producer_configs(from_env({}))["batch_size"] == 256 * 1024
    assert producer_configs(from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "65536"}))["batch_size"] == 65536
    with pytest.raises(ConfigError, match="COLLECTOR_KAFKA_BATCH_BYTES must be between 1024 and 1000000"):
        from_env({"COLLECTOR_KAFKA_BATCH_BYTES": "2000000"})
