"""What a SIGKILL costs in events answered 204: ``python bench/sigkill.py [RUNS]``.

Two cases, RUNS times each (default 3), against gunicorn (2 workers) and the embedded broker,
with 8 client threads posting events, each with its own instance_id (the record key):

- worker: one worker is SIGKILLed 2 s into 4 s of load; gunicorn replaces it.
- whole: the master and every process below it (the workers, gunicorn's dirty arbiter, the
  sender process) are SIGKILLed 2 s into the load, then a new gunicorn is
  started on the same COLLECTOR_SPOOL_DIR and loaded for 2 s more.

Then it waits (up to a minute) for every event answered 204 to be in Kafka, stops the
collector, and prints one line per run: the events answered 204, those of them missing from
Kafka, the duplicates (records beyond one per event), and the answered requests per second
under load. A request that fails at the socket during the kill is not a 204.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev.broker import Broker  # noqa: E402
from dev.events import read_records  # noqa: E402
from tests.helpers import Collector  # noqa: E402

LOAD_S = 2.0  # of load before the kill, and again after it
DELIVERY_WAIT_S = 60.0


class Load:
    """8 client threads posting events to the collector of the moment, 40 at a time, until stopped."""

    def __init__(self, aid: str, collector: Collector) -> None:
        self.aid = aid
        self.results: dict[str, tuple[int, float]] = {}
        self.loaded_s = 0.0  # seconds spent with a collector to post to
        self._collector: Collector | None = collector
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            collector = self._collector
            if collector is None:
                self._stop.wait(0.01)
                continue
            self.results.update(collector.post_many(self.aid, (f"k-{n + i}" for i in range(40)), threads=8))
            n += 40

    def switch(self, collector: Collector | None) -> None:
        """Post to ``collector`` from now on; None: post nothing until told again."""
        now = time.monotonic()
        if self._collector is not None:
            self.loaded_s += now - self._since
        self._collector, self._since = collector, now

    def stop(self) -> None:
        self.switch(None)
        self._stop.set()
        self._thread.join()

    def accepted(self) -> set[str]:
        return {key for key, (status, _) in self.results.items() if status == 204}

    def rate(self) -> float:
        """Requests answered (by any status) per second under load."""
        return sum(1 for status, _ in self.results.values() if status) / max(self.loaded_s, 1e-9)


def wait_for_kafka(broker: Broker, topic: str, expected: set[str]) -> None:
    """Read ``topic`` until it holds every key of ``expected`` or DELIVERY_WAIT_S passes."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline:
        if expected <= {r.key.decode() for r in read_records(broker.servers, topic, timeout=15)}:
            return


def tally(case: str, number: int, broker: Broker, topic: str, load: Load) -> str:
    """The run's line: 204s, those missing from Kafka, duplicates, requests/s."""
    keys = Counter(r.key.decode() for r in read_records(broker.servers, topic, timeout=30))
    accepted = load.accepted()
    missing = len(accepted - set(keys))
    duplicates = sum(count - 1 for count in keys.values())
    return (f"{case} run {number}: {len(accepted):,} answered 204, {missing:,} missing, "
            f"{duplicates:,} duplicates, {load.rate():,.0f} requests/s")


def serve(broker: Broker, workdir: Path, name: str) -> Collector:
    """A collector on ``workdir/spool``, with metrics files of its own (a killed master leaves its own behind)."""
    metrics = workdir / f"metrics-{name}"
    metrics.mkdir()
    return Collector(broker.servers, workdir, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics)}).start()


def worker_killed(number: int) -> str:
    """Load; SIGKILL one of the two workers mid-way; count."""
    with Broker() as broker, tempfile.TemporaryDirectory() as workdir:
        aid = str(900 + number)
        broker.create_topic(f"events.{aid}")
        collector = serve(broker, Path(workdir), "first")
        load = Load(aid, collector)
        try:
            time.sleep(LOAD_S)
            os.kill(collector.worker_pids()[0], signal.SIGKILL)
            time.sleep(LOAD_S)
        finally:
            load.stop()
        wait_for_kafka(broker, f"events.{aid}", load.accepted())
        collector.stop()
        return tally("worker", number, broker, f"events.{aid}", load)


def server_killed(number: int) -> str:
    """Load; SIGKILL the master and every process below it mid-way; a new gunicorn on the same spool; count."""
    with Broker() as broker, tempfile.TemporaryDirectory() as workdir:
        aid = str(950 + number)
        broker.create_topic(f"events.{aid}")
        first = serve(broker, Path(workdir), "first")
        load = Load(aid, first)
        again: Collector | None = None
        try:
            time.sleep(LOAD_S)
            assert first.proc is not None
            workers = first.pids()[1:]  # the workers, gunicorn's dirty arbiter, the sender process
            # Stopped first, the master can neither replace the workers nor tell them to exit.
            os.kill(first.proc.pid, signal.SIGSTOP)
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            os.kill(first.proc.pid, signal.SIGKILL)
            load.switch(None)
            first.proc.wait()
            again = serve(broker, Path(workdir), "again")
            load.switch(again)
            time.sleep(LOAD_S)
        finally:
            load.stop()
        wait_for_kafka(broker, f"events.{aid}", load.accepted())
        if again is not None:
            again.stop()
        return tally("whole", number, broker, f"events.{aid}", load)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=int, nargs="?", default=3, help="runs of each case (default 3)")
    runs = parser.parse_args().runs
    for case in (worker_killed, server_killed):
        for n in range(runs):
            print(case(n), flush=True)
