"""Faults at random under load: ``python bench/storm.py --minutes N [--seed S] [--workers W]``.

Client threads post single events and batches to five accounts of gunicorn (W workers) on the
embedded broker, each event with its own instance_id (the record key), while one fault at a
time strikes, drawn with the printed seed, a few seconds apart: the broker frozen (SIGSTOP); the
broker replaced by an empty one (what the old one holds is read first, the collector paused so
nothing reaches it unread; then more than 2 s with no broker, as the collector's probe needs
about one to notice); a worker SIGKILLed or SIGTERMed; a reload (SIGHUP); the whole server
SIGKILLed and started again on the same spool; as root, a full disk (the spool is a small tmpfs
for the run, a filler takes most of it for a few seconds). The broker's schema registry, shared
by every broker of the run, refuses one account's topic for good: its events must all become
dead letters. Then it waits for every event answered 204 to be in Kafka (or a dead letter),
stops the collector and prints a summary; exit status 1 if one is missing, or if another
account has dead letters.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev.broker import Broker  # noqa: E402
from tests.helpers import EVENT, Collector  # noqa: E402

ACCOUNTS = ("101", "102", "103", "104")
REFUSED = "199"  # the account whose topic the broker refuses for good
REFUSED_SHARE = 0.05  # of the requests: its dead letters pile up on the small disk (nothing deletes them)
SPOOL_MIB = 16  # the tmpfs under the spool directory
ENV = {"COLLECTOR_SPOOL_SEGMENT_BYTES": str(1 << 20)}  # small segments, deleted soon: the disk is small
DELIVERY_WAIT_S = 180.0
FAULTS = ("broker frozen", "broker replaced", "worker killed", "server killed", "reload", "worker exit",
          "disk full")


def post(port: int, path: str, body: object) -> tuple[int, bytes]:
    """POST ``body`` as JSON: the status and the answer; status 0 when the socket failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        conn.close()


class Clients:
    """Threads posting to the collector of the moment until stopped; thread 0 posts batches."""

    def __init__(self, seed: int, threads: int = 4) -> None:
        self.collector: Collector | None = None  # None: post nothing for now
        self.accepted: dict[str, float] = {}  # key -> when it was answered (time.monotonic)
        self.turned_away: dict[str, str] = {}  # key -> "503", "socket" or the status, for the others
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n, random.Random(f"{seed}-{n}")), daemon=True)
                         for n in range(threads)]

    def start(self, collector: Collector) -> None:
        self.collector = collector
        for thread in self._threads:
            thread.start()

    def _run(self, number: int, rng: random.Random) -> None:
        batches, n = number == 0, 0
        while not self._stop.is_set():
            collector = self.collector
            if collector is None:
                self._stop.wait(0.01)
                continue
            aid = REFUSED if rng.random() < REFUSED_SHARE else rng.choice(ACCOUNTS)
            keys = [f"{aid}-{number}-{n + i}" for i in range(rng.randint(2, 20) if batches else 1)]
            n += len(keys)
            events = [{**EVENT, "instance_id": key} for key in keys]
            path, body = (f"/collect/{aid}/1/events", events) if batches else (f"/collect/{aid}/1/event", events[0])
            status, answer = post(collector.port, path, body)
            ok = status == 204 or status == 200 and json.loads(answer)["accepted"] == len(keys)
            outcome = "accepted" if ok else "socket" if status == 0 else str(status)
            with self._lock:
                self.requests[outcome] += 1
                if ok:
                    self.accepted.update(dict.fromkeys(keys, time.monotonic()))
                else:
                    self.turned_away.update(dict.fromkeys(keys, outcome))
            self._stop.wait(0.1 if batches else 0.01)  # some 350 events/s: a storm of faults, not of load

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(60)


def harvest(servers: str, timeout: float = 60.0) -> Counter[str]:
    """The keys of every record on the broker's event topics, counted by reading them all, until
    nothing more came for 2 s (the broker's end offsets are not to be trusted)."""
    keys: Counter[str] = Counter()
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False,
                             api_version=(3, 9))
    try:
        topics = [t for t in consumer.topics() if t.startswith("events.")]  # listing creates no topic
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        if not partitions:
            return keys
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        quiet = time.monotonic()
        deadline = quiet + timeout
        while time.monotonic() < deadline and time.monotonic() - quiet < 2.0:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                keys.update(r.key.decode() for r in records)
            if batch:
                quiet = time.monotonic()
    finally:
        consumer.close()
    return keys


def dead_letters(spool: Path) -> tuple[list[tuple[str, str]], int]:
    """The (topic, key) of every dead letter, and how many lines are not whole JSON."""
    letters, torn = [], 0
    for path in sorted((spool / "dead-letter").glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                letter = json.loads(line)
                letters.append((letter["topic"], letter["key"]))
            except (ValueError, KeyError):
                torn += 1
    return letters, torn


class Storm:
    """The broker, the collector, the clients, the faults, and what each broker took before it went."""

    def __init__(self, workdir: Path, workers: int, seed: int) -> None:
        self.workdir, self.workers, self.rng = workdir, workers, random.Random(seed)
        self.spool = workdir / "spool"
        self.tmpfs = False
        self.broker = Broker(schema_registry=workdir / "schemas")  # each broker of the run shares it
        self.collector = self.collector_on_spool()
        self.clients = Clients(seed)
        self.gone: Counter[str] = Counter()  # the keys that the replaced brokers held
        self.faults: Counter[str] = Counter()
        self.timeline: list[tuple[float, str]] = []  # (time.monotonic(), fault)
        self.began = time.monotonic()

    def start(self) -> None:
        self.spool.mkdir()
        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPOOL_MIB}m", "tmpfs", str(self.spool)], check=True)
            self.tmpfs = True
        self.broker.start()
        self.broker.refuse_records(f"events.{REFUSED}")
        self.clients.start(self.collector.start())
        self.began = time.monotonic()

    def collector_on_spool(self) -> Collector:
        """A gunicorn (not started) on the spool directory, with metrics files of its own."""
        metrics = tempfile.mkdtemp(prefix="metrics-", dir=self.workdir)
        env = {**ENV, "COLLECTOR_SPOOL_DIR": str(self.spool), "PROMETHEUS_MULTIPROC_DIR": metrics}
        return Collector(self.broker.servers, self.workdir, env=env, workers=self.workers)

    def say(self, what: str) -> None:
        print(f"{time.monotonic() - self.began:7.1f} s  {what}", flush=True)

    def strike(self, name: str) -> None:
        self.timeline.append((time.monotonic(), name))
        self.faults[name] += 1
        {"broker frozen": self.broker_frozen, "broker replaced": self.broker_replaced,
         "worker killed": lambda: self.signal_worker(signal.SIGKILL), "server killed": self.server_killed,
         "reload": self.reload, "worker exit": lambda: self.signal_worker(signal.SIGTERM),
         "disk full": self.disk_full}[name]()

    def broker_frozen(self) -> None:
        seconds = self.rng.uniform(2, 6)
        self.say(f"broker frozen for {seconds:.1f} s")
        self.broker.pause()
        time.sleep(seconds)
        self.broker.resume()

    def gunicorn(self, sig: int) -> None:
        """Send ``sig`` to the master, then to every process below it (a stopped master forks none
        meanwhile): the workers, gunicorn's dirty arbiter and the sender process."""
        assert self.collector.proc is not None
        for pid in self.collector.pids():
            with contextlib.suppress(ProcessLookupError):  # a worker that exited meanwhile
                os.kill(pid, sig)

    def broker_replaced(self) -> None:
        gap = self.rng.uniform(2.5, 4)
        self.gunicorn(signal.SIGSTOP)
        try:
            time.sleep(0.2)  # produce requests already sent land
            held = harvest(self.broker.servers)
            self.gone.update(held)
            self.broker.kill()
        finally:
            self.gunicorn(signal.SIGCONT)
        self.say(f"broker replaced: it held {sum(held.values()):,} records; {gap:.1f} s with no broker")
        time.sleep(gap)
        self.broker = Broker(self.broker.port, schema_registry=self.broker.schema_registry)
        self.broker.start()

    def signal_worker(self, sig: int) -> None:
        pids = self.collector.worker_pids() + self.collector.sender_pids()  # the sender process is a target too
        pid = pids[int(self.rng.random() * len(pids))]  # one draw, whatever the count: the seed's faults stay
        self.say(f"worker {pid}: {signal.Signals(sig).name}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def server_killed(self) -> None:
        assert self.collector.proc is not None
        self.say("server killed (SIGKILL to the master and its workers), a new gunicorn on the spool")
        self.gunicorn(signal.SIGSTOP)
        self.gunicorn(signal.SIGKILL)
        self.clients.collector = None
        self.collector.proc.wait(30)
        self.collector = self.collector_on_spool()  # first, so that a failed start is stopped too
        self.clients.collector = self.collector.start()

    def reload(self) -> None:
        assert self.collector.proc is not None
        self.say("reload: SIGHUP to the master")
        self.collector.proc.send_signal(signal.SIGHUP)

    def disk_full(self) -> None:
        seconds, filler = self.rng.uniform(2, 6), self.spool / "storm-filler"
        disk = os.statvfs(self.spool)
        size = max(disk.f_bavail * disk.f_frsize - (64 << 10), 1)  # most of it: a few records still fit
        self.say(f"disk full: a filler of {size / (1 << 20):.1f} MiB for {seconds:.1f} s")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
            time.sleep(seconds)
        finally:
            os.close(fd)
            filler.unlink()

    def run(self, minutes: float) -> None:
        """Strike at random until ``minutes`` have passed, one fault at a time."""
        faults = [f for f in FAULTS if f != "disk full" or self.tmpfs]
        if not self.tmpfs:
            self.say("disk full: skipped (mounting a tmpfs needs root)")
        end = self.began + minutes * 60
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(self.rng.uniform(2, 6), left))
            if time.monotonic() < end:
                self.strike(self.rng.choice(faults))

    def tally(self) -> tuple[Counter[str], list[tuple[str, str]], int]:
        """The keys in Kafka (this broker and those replaced), the dead letters, the torn lines."""
        return self.gone + harvest(self.broker.servers), *dead_letters(self.spool)

    def wait_for_delivery(self) -> None:
        """Read Kafka and the dead letters until every accepted event is in one (or the wait ends)."""
        deadline, said = time.monotonic() + DELIVERY_WAIT_S, 0
        while True:
            found, letters, _ = self.tally()
            dead = {key for _, key in letters}
            late = sum(k not in (dead if k.startswith(f"{REFUSED}-") else found) for k in self.clients.accepted)
            if not late or time.monotonic() > deadline:
                return
            if late != said:
                self.say(f"waiting: {late:,} events answered 204 not delivered yet")
            said = late
            time.sleep(2)

    def close(self) -> None:
        """Stop whatever runs (thawed first), remove the filler, unmount the tmpfs."""
        self.clients.stop()
        if self.collector.proc is not None and self.collector.proc.poll() is None:
            try:
                self.gunicorn(signal.SIGCONT)
                self.collector.stop()
            except (OSError, subprocess.TimeoutExpired):
                self.gunicorn(signal.SIGKILL)
        self.broker.stop()
        if self.tmpfs:
            with contextlib.suppress(OSError):  # what is left, for a look after a failed run
                shutil.copytree(self.spool, self.workdir / "spool-left")
            subprocess.run(["umount", "-l", str(self.spool)], check=False)


def preceding(storm: Storm, missing: list[str]) -> list[str]:
    """The missing events by when they were answered: between which faults."""
    groups: dict[int, list[float]] = {}
    for key in missing:
        at = storm.clients.accepted[key]
        groups.setdefault(sum(t <= at for t, _ in storm.timeline), []).append(at - storm.began)
    names = ["the start", *(f"fault {n} ({name})" for n, (_, name) in enumerate(storm.timeline, 1)), "the end"]
    return [f"  {len(times):,} answered at {min(times):.1f}-{max(times):.1f} s, between {names[n]} and {names[n + 1]}"
            for n, times in sorted(groups.items())]


def summary(storm: Storm, seed: int, minutes: float, found: Counter[str], letters: list[tuple[str, str]],
            torn: int) -> int:
    """Print what reached where; 1 if an event answered 204 is missing or a healthy account has dead letters."""
    clients, mine = storm.clients, f"{REFUSED}-"
    refused = [k for k in clients.accepted if k.startswith(mine)]
    dead = Counter(key for _, key in letters)
    missing = [k for k in clients.accepted if not k.startswith(mine) and k not in found]
    missing_dead = [k for k in refused if k not in dead]
    strays = Counter(topic for topic, _ in letters if topic != f"events.{REFUSED}")
    unanswered = Counter(clients.turned_away[k] for k in found if k in clients.turned_away)
    req = clients.requests
    others = {s: n for s, n in req.items() if s not in ("accepted", "503", "socket")}
    print(f"\nstorm: seed {seed}, {minutes:g} minutes, {storm.workers} workers, spool "
          + (f"on a {SPOOL_MIB} MiB tmpfs" if storm.tmpfs else "on disk"))
    print("faults: " + ", ".join(f"{name} {storm.faults[name]}" for name in FAULTS)
          + ("" if storm.tmpfs else " (disk full skipped: not root)"))
    print(f"requests: {req['accepted']:,} accepted, {req['503']:,} answered 503, {req['socket']:,} failed at "
          f"the socket" + (f", other answers {others}" if others else ""))
    print(f"events answered 204 (or 200, all of a batch): {len(clients.accepted):,}, "
          f"{len(clients.accepted) / (minutes * 60):,.0f}/s; {len(refused):,} of them to the refused account")
    print(f"missing from Kafka: {len(missing):,}")
    print(f"refused account's events missing from the dead letters: {len(missing_dead):,}; its records in Kafka: "
          f"{sum(n for k, n in found.items() if k.startswith(mine)):,}")
    print(f"duplicates in Kafka: {sum(n - 1 for n in found.values() if n > 1):,}")
    print(f"dead letters: {len(letters):,} ({sum(n - 1 for n in dead.values() if n > 1):,} duplicates, {torn} "
          f"lines not whole JSON); of other accounts than {REFUSED}: {sum(strays.values()):,}"
          + (f" {dict(strays)}" if strays else ""))
    print(f"in Kafka without a 204: {sum(unanswered.values()):,}" + (f" {dict(unanswered)}" if unanswered else ""))
    if missing or missing_dead:
        print("missing events, by the faults around their answer:", *preceding(storm, missing + missing_dead),
              "  e.g. " + ", ".join((missing + missing_dead)[:5]), sep="\n")
    failed = bool(missing or missing_dead or strays)
    print("result: " + ("FAILED" if failed else "ok"), flush=True)
    return int(failed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"storm: seed {seed}, {args.minutes:g} minutes, {args.workers} workers", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a SIGTERM cleans up like Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="storm-"))
    storm = Storm(workdir, args.workers, seed)
    failed = 1
    try:
        storm.start()
        storm.run(args.minutes)
        storm.clients.stop()
        storm.say("load stopped; waiting for every event answered 204 to be delivered")
        storm.wait_for_delivery()
        storm.collector.stop()
        found, letters, torn = storm.tally()  # once more: what the exit delivered
        failed = summary(storm, seed, args.minutes, found, letters, torn)
    except KeyboardInterrupt:
        print("interrupted: stopping what runs", flush=True)
        failed = 130
    finally:
        storm.close()
        if failed:
            print(f"logs kept in {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
