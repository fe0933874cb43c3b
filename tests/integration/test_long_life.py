"""The log over a long life, seen from outside against gunicorn and the embedded broker: the
spool's maximum is about what the log holds now, in every worker however much it took; one
flipped byte after a whole-server SIGKILL costs one event, counted once."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from app.segment import HEADER, decode
from dev.broker import Broker, free_port
from dev.events import read_records
from tests.helpers import Collector, metric, new_account, wait_until

pytestmark = pytest.mark.integration

EVENT = {"action": "view", "object": "o", "vendor": "v", "product": "p"}


def totals(collector: Collector) -> str:
    return collector.request("GET", "/metrics")[2].decode()


def delivered(collector: Collector) -> float:
    return metric(totals(collector), 'collector_events_total{outcome="delivered"}')


def test_a_1_mib_log_takes_12_mib_of_batches_delivered_as_they_come(broker: Broker, tmp_path: Path) -> None:
    aid = new_account(broker)
    collector = Collector(broker.servers, tmp_path, env={
        "COLLECTOR_SPOOL_MAX_BYTES": str(1024**2), "COLLECTOR_MAX_BODY_BYTES": str(900 * 1024)}).start()
    try:
        answers = []
        for batch in range(60):  # 60 batches of 50 events of 4 kB: 12 MiB, 12 times the maximum
            events = [{**EVENT, "instance_id": f"b{batch}-{i}", "pad": "x" * 4000} for i in range(50)]
            status, _, body = collector.request("POST", f"/collect/{aid}/1/events", json.dumps(events).encode(),
                                                {"Content-Type": "application/json"})
            answers.append(status if status != 200 else json.loads(body)["accepted"])
            done = sum(a for a in answers if a != 503)
            wait_until(lambda done=done: delivered(collector) >= done, timeout=30, what="the batch delivered")
        assert answers == [50] * 60  # no 503 from either worker
        keys = {r.key.decode() for r in read_records(broker.servers, f"events.{aid}", count=3000, timeout=60)}
        assert len(keys) == 3000
    finally:
        collector.stop()


def frames(path: Path) -> list[tuple[int, str]]:
    """The offset and key of each record of a segment, read with the collector's own decoder."""
    data, offset, found = path.read_bytes(), len(HEADER), []
    while (record := decode(data, offset))[0] is not None:
        found.append((offset, record[0].key.decode()))
        offset = record[2]
    return found


def test_after_a_whole_server_sigkill_one_flipped_byte_costs_one_event_counted_once(broker: Broker,
                                                                                      tmp_path: Path) -> None:
    aid = new_account(broker)
    nowhere = f"127.0.0.1:{free_port()}"  # Kafka away: every 204 waits in the log
    first = Collector(nowhere, tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m1")})
    (tmp_path / "m1").mkdir()
    first.start()
    statuses = [first.post_event({**EVENT, "instance_id": f"k{n}"}, aid=aid)[0] for n in range(300)]
    assert statuses == [204] * 300
    workers = first.worker_pids()
    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGKILL)
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    first.proc.wait(10)
    spool = tmp_path / "spool"
    biggest = max(spool.glob("*.wal"), key=lambda p: len(frames(p)))
    records = frames(biggest)
    offset, victim = records[len(records) // 2]
    data = bytearray(biggest.read_bytes())
    data[offset + 8 + 3] ^= 0xFF  # one byte inside the body of the record in the middle
    biggest.write_bytes(bytes(data))
    (tmp_path / "m2").mkdir()
    second = Collector(broker.servers, tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "m2")}).start()
    try:
        expected = {f"k{n}" for n in range(300)} - {victim}
        wait_until(lambda: expected <= {r.key.decode() for r in read_records(broker.servers, f"events.{aid}",
                                                                               timeout=5)},
                   timeout=60, what="every other event delivered")
        keys = {r.key.decode() for r in read_records(broker.servers, f"events.{aid}", timeout=5)}
        assert keys == expected
        assert metric(totals(second), 'collector_events_total{outcome="lost"}') == 1
    finally:
        second.stop()
