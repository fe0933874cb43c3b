"""What a long Kafka outage costs the collector: ``python bench/outage.py --mode frozen|refused``.

gunicorn (``--workers``, one sender per host) against the embedded broker, a light load
throughout (``--rate`` single events a second, each its own instance_id, over a few accounts).
After ``--before`` seconds of normal delivery, an outage of ``--seconds``:

- frozen: the broker is SIGSTOPped (it accepts connections and never answers: a hung Kafka),
  then SIGCONTed;
- refused: the broker stops (connections refused); at the end a new, empty one starts on the
  same port. The load pauses first until all it posted is read back from the first broker,
  since what that broker holds is gone with it.

Every ``--every`` seconds, and at the start and end of the outage, one line: seconds into the
outage, the spool's segments, bytes, ``.ack`` and ``.tmp`` files, dead-letter bytes, and for
the master, each worker (``*``: the one holding sender.lock) and the broker: open descriptors /
sockets / epoll instances, and RSS. The load goes on ``--after`` seconds past the outage; then
it waits (up to ``--wait``) until every event answered 204 is read back from Kafka, samples
``--linger`` seconds more, and prints a summary. Exit status 1 if an event answered 204 is missing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python bench/outage.py
    sys.path.insert(0, str(ROOT))

from bench.figures import Sampler, in_workdir  # noqa: E402
from dev.broker import Broker  # noqa: E402
from dev.events import read_records  # noqa: E402
from tests.helpers import Collector  # noqa: E402

EVENT = {"action": "view", "object": "o", "vendor": "v", "product": "p"}


class Load:
    """``rate`` events a second from a few threads, over ``accounts`` accounts; at most 32 in flight."""

    def __init__(self, collector: Collector, rate: float, accounts: int) -> None:
        self.collector, self.rate, self.accounts = collector, rate, accounts
        self.statuses: dict[str, int] = {}  # key (instance_id, "<aid>-<n>") -> status, 0: failed at the socket
        self.skipped = 0  # ticks with 32 requests already in flight
        self.held = threading.Event()
        self._slots = threading.Semaphore(32)
        self._pool = ThreadPoolExecutor(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        n, due = 0, time.monotonic()
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += 1 / self.rate
            if self.held.is_set():
                continue
            if not self._slots.acquire(blocking=False):
                self.skipped += 1
                continue
            self._pool.submit(self._post, f"{1 + n % self.accounts}-{n}")
            n += 1

    def _post(self, key: str) -> None:
        try:
            self.statuses[key] = self.collector.post_event({**EVENT, "instance_id": key}, aid=key.split("-")[0])[0]
        except OSError:
            self.statuses[key] = 0
        finally:
            self._slots.release()

    def quiet(self) -> None:
        """Wait (up to 30 s) until no request is in flight."""
        deadline = time.monotonic() + 30
        while self._slots._value < 32 and time.monotonic() < deadline:  # noqa: SLF001 - a bench's peek
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def accepted(self) -> set[str]:
        return {key for key, status in list(self.statuses.items()) if status == 204}


def in_kafka(broker: Broker, accounts: int) -> Counter[str]:
    """The keys of the records in every account's topic, each with how often it is there."""
    return Counter(r.key.decode() for aid in range(1, accounts + 1)
                   for r in read_records(broker.servers, f"events.{aid}", timeout=15))


def stop_collector(collector: Collector) -> None:
    """SIGTERM gunicorn and wait; SIGKILL it and its workers if it is not gone in a minute."""
    if collector.proc is None:
        return
    workers = collector.worker_pids() if collector.proc.poll() is None else []
    try:
        collector.stop()
    except subprocess.TimeoutExpired:
        for pid in [collector.proc.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        collector.proc.wait()


def summary(args: argparse.Namespace, load: Load, expected: set[str], found: Counter[str],
            sampler: Sampler, settled_s: float | None, log: Path) -> int:
    """Print what became of the events and the peaks; 1 if an event answered 204 is missing."""
    missing = expected - set(found)
    answers = Counter(load.statuses.values())
    print(f"\nsummary: --mode {args.mode} --workers {args.workers} --seconds {args.seconds} --rate {args.rate:g}")
    print(f"  events answered 204: {len(expected):,}   other answers: "
          f"{ {s or 'socket error': n for s, n in answers.items() if s != 204} or 'none'}   "
          f"ticks skipped (32 in flight): {load.skipped}")
    print(f"  missing from Kafka: {len(missing):,}   duplicates: {sum(n - 1 for n in found.values()):,}   "
          + (f"all in Kafka {settled_s:.0f} s after the outage ended" if settled_s is not None
             else f"NOT all in Kafka {args.wait:.0f} s after the load stopped"))
    for what, (value, where) in sampler.peak.items():
        print(f"  peak {what}: {value:,}  ({where})")
    print(f"  final: {sampler.last.strip()}")
    text = log.read_text(errors="replace") if log.exists() else ""
    print(f"  gunicorn log: {text.count('[ERROR]')} ERROR lines, {text.count('[CRITICAL]')} CRITICAL, "
          f"{text.count('Traceback')} tracebacks, {text.count('WORKER TIMEOUT')} worker timeouts")
    if missing:
        print(f"  missing, first few: {sorted(missing)[:10]}")
    return 1 if missing else 0


def run(args: argparse.Namespace, workdir: Path) -> int:
    (workdir / "metrics").mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), **dict(e.split("=", 1) for e in args.env)}
    broker = Broker().start()
    collector = Collector(broker.servers, workdir, env=env, workers=args.workers)
    load: Load | None = None
    sampler: Sampler | None = None
    try:
        collector.start()
        sampler = Sampler(collector, broker, Path(collector.env["COLLECTOR_SPOOL_DIR"]))
        sampler.zero = time.monotonic() + args.before
        sampler.sample("before the load")
        sampler.tick(args.every)
        load = Load(collector, args.rate, args.accounts)
        time.sleep(max(0.0, sampler.zero - time.monotonic()))
        before: Counter[str] = Counter()  # refused: what the first broker held, gone with it
        if args.mode == "refused":
            load.held.set()
            load.quiet()
            deadline = time.monotonic() + 30
            while not load.accepted() <= set(before) and time.monotonic() < deadline:
                before = in_kafka(broker, args.accounts)
            print(f"the first broker holds {len(before):,} of the {len(load.accepted()):,} events answered 204")
            broker.stop()
        else:
            broker.pause()
        sampler.zero = began = time.monotonic()
        load.held.clear()
        sampler.sample(f"outage begins ({args.mode})")
        time.sleep(max(0.0, began + args.seconds - time.monotonic()))
        sampler.sample("outage ends")
        if args.mode == "refused":
            sampler.broker = broker = Broker(broker.port).start()
        else:
            broker.resume()
        ended = time.monotonic()
        time.sleep(args.after)
        load.stop()
        expected, settled_s = load.accepted(), None
        found: Counter[str] = Counter()
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            found = before + in_kafka(broker, args.accounts)
            if expected <= set(found):
                settled_s = time.monotonic() - ended
                break
        time.sleep(args.linger)  # do the figures come back down once Kafka is back?
        sampler.stopped.set()
        sampler.sample(f"final, {args.linger:.0f} s after " + ("delivery" if settled_s is not None else "the wait"))
        return summary(args, load, expected, found, sampler, settled_s, collector.log)
    finally:
        if sampler is not None:
            sampler.stopped.set()
        if load is not None:
            load.stop()
        stop_collector(collector)
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("frozen", "refused"), required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=150, help="of outage")
    parser.add_argument("--rate", type=float, default=20, help="events a second")
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--before", type=float, default=10, help="seconds of normal delivery first")
    parser.add_argument("--after", type=float, default=10, help="seconds of load after the outage")
    parser.add_argument("--linger", type=float, default=30, help="seconds of sampling after delivery")
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    parser.add_argument("--wait", type=float, default=180, help="most seconds to wait for delivery")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a collector setting")
    parser.add_argument("--keep", action="store_true", help="keep the spool and gunicorn's log")
    return in_workdir("outage-", parser.parse_args(), run)


if __name__ == "__main__":
    sys.exit(main())
