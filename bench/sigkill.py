"""How many 204'd events a SIGKILL loses: ``python bench/sigkill.py [RUNS]``.

Posts events from 8 client threads to gunicorn (2 workers, the embedded broker) for 4 s,
kills one worker with SIGKILL after 2 s, then counts the events answered 204 that are not
in Kafka. Prints one line per run.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev.broker import Broker  # noqa: E402
from dev.events import read_records  # noqa: E402
from tests.conftest import Collector  # noqa: E402


def run(number: int) -> str:
    """One run: load, a SIGKILL mid-way, then 204s against Kafka."""
    with Broker() as broker:
        aid = str(900 + number)
        broker.create_topic(f"events.{aid}")
        collector = Collector(broker.servers, Path(tempfile.mkdtemp())).start()
        results: dict[str, tuple[int, float]] = {}
        stop = threading.Event()

        def load() -> None:
            i = 0
            while not stop.is_set():
                results.update(collector.post_many(aid, (f"k-{i + j}" for j in range(40)), threads=8))
                i += 40

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(2)
        os.kill(collector.worker_pids()[0], signal.SIGKILL)
        time.sleep(2)
        stop.set()
        loader.join()
        accepted = {k for k, (status, _) in results.items() if status == 204}
        found = {r.key.decode() for r in read_records(broker.servers, f"events.{aid}", timeout=15)}
        collector.stop()
        return (f"run {number}: {len(accepted)} answered 204, {len(accepted - found)} of them not in Kafka, "
                f"{len(results) / 4:.0f} requests/s")


if __name__ == "__main__":
    for n in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(run(n), flush=True)
