"""What the fault benchmarks (outage.py, accounts.py) sample of a running collector: each
process's descriptors, sockets, epoll instances and RSS, and the spool's files; one line at a
time, keeping the peaks."""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dev.broker import Broker
from tests.helpers import Collector


def in_workdir(prefix: str, args: argparse.Namespace, run: Callable[[argparse.Namespace, Path], int]) -> int:
    """``run(args, workdir)`` in a new directory, removed after unless ``args.keep``; SIGTERM exits cleanly."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(args, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def process(pid: int) -> tuple[int, int, int, int]:
    """Open descriptors, sockets and epoll instances of ``pid``, and its RSS in KiB (zeros once gone)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
        with open(f"/proc/{pid}/status") as status:
            rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0, 0, 0, 0
    links = []
    for name in names:
        with contextlib.suppress(OSError):  # closed since the listing
            links.append(os.readlink(f"/proc/{pid}/fd/{name}"))
    return (len(names), sum(link.startswith("socket:") for link in links),
            sum(link == "anon_inode:[eventpoll]" for link in links), rss)


def lock_holder(spool: Path) -> int | None:
    """The pid holding the flock of ``spool/sender.lock`` (the host's sender), from /proc/locks."""
    try:
        inode = (spool / "sender.lock").stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for fields in (line.split() for line in lines):
        if fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            return int(fields[4])
    return None


def sizes(folder: Path, ending: str) -> list[int]:
    """The sizes of the files in ``folder`` whose names end with ``ending``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.endswith(ending):
                with contextlib.suppress(OSError):  # deleted since the listing
                    found.append(entry.stat().st_size)
    return found


def spool_figures(spool: Path) -> tuple[int, int, int, int, int]:
    """Segments (``*.wal``, the first format's ``*.log``), their bytes, ``.ack`` files, ``.tmp``
    files, dead-letter bytes."""
    segments = sizes(spool, ".wal") + sizes(spool, ".log")
    return (len(segments), sum(segments), len(sizes(spool, ".ack")), len(sizes(spool, ".tmp")),
            sum(sizes(spool / "dead-letter", ".jsonl")))


class Sampler:
    """Prints one line of figures on demand (seconds since ``zero``), or every ``every`` seconds
    once ``tick`` is called; keeps each figure's peak over the collector's processes."""

    def __init__(self, collector: Collector, broker: Broker, spool: Path) -> None:
        self.collector, self.broker, self.spool = collector, broker, spool
        self.zero = time.monotonic()
        self.peak: dict[str, tuple[int, str]] = {}
        self.last = ""
        self.stopped = threading.Event()
        self._at = 0.0
        self._names: list[str] = []
        self._lock = threading.Lock()

    def processes(self) -> list[tuple[str, int]]:
        """(name, pid) of the master, each worker by pid (``*``: the sender's) and the broker (0: stopped)."""
        assert self.collector.proc is not None
        holder = lock_holder(self.spool)
        workers = [(f"w{i}{'*' if pid == holder else ''}", pid)
                   for i, pid in enumerate(sorted(self.collector.worker_pids()), 1)]
        broker = self.broker.proc.pid if self.broker.proc is not None else 0  # 0: none now
        return [("master", self.collector.proc.pid), *workers, ("broker", broker)]

    def keep(self, what: str, value: int, where: str) -> None:
        if value > self.peak.get(what, (-1, ""))[0]:
            self.peak[what] = (value, where)

    def sample(self, note: str = "") -> str:
        """Print and return one line of figures."""
        with self._lock:
            self._at = time.monotonic()
            t = self._at - self.zero
            segments, size, acks, tmps, dead = spool_figures(self.spool)
            procs = self.processes()
            names = [f"{name.rstrip('*')}={pid or '-'}" for name, pid in procs]
            if names != self._names:  # first, or a worker replaced
                print("processes:", " ".join(names), "  (each: descriptors/sockets/epolls RSS; *: the sender)")
                print(f"{'t s':>6} {'segs':>5} {'KiB':>7} {'ack':>4} {'tmp':>4} {'deadKiB':>7} | "
                      + " ".join(f"{name.rstrip('*'):>17}" for name, _ in procs), flush=True)
                self._names = names
            cells = []
            for name, pid in procs:
                fds, socks, epolls, rss = process(pid)
                mark = "*" if name.endswith("*") else ""
                cells.append(f"{mark}{fds}/{socks}/{epolls} {rss // 1024}M" if pid else "-")
                if name != "broker":
                    where = f"{name} pid {pid}, t={t:.0f}"
                    for what, value in (("descriptors", fds), ("sockets", socks), ("epolls", epolls),
                                        ("RSS KiB", rss)):
                        self.keep(what, value, where)
            self.keep("segments", segments, f"t={t:.0f}")
            self.keep("spool KiB", size // 1024, f"t={t:.0f}")
            self.last = (f"{t:6.0f} {segments:5d} {size // 1024:7d} {acks:4d} {tmps:4d} {dead // 1024:7d} | "
                         + " ".join(f"{c:>17}" for c in cells) + (f"  {note}" if note else ""))
            print(self.last, flush=True)
            return self.last

    def tick(self, every: float) -> None:
        """From now on, a line at every multiple of ``every`` seconds from ``zero`` (none within 2 s of another)."""
        def run() -> None:
            while not self.stopped.wait(every - (time.monotonic() - self.zero) % every):
                if time.monotonic() - self._at > 2:
                    self.sample()

        threading.Thread(target=run, daemon=True).start()
