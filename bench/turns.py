"""What more worker processes cost each request on these cores, without gunicorn, wrk or Kafka.

N processes take turns round a ring of pipes, one request each, as gunicorn's sync workers
take requests in turn: each calls the app's WSGI entry with the benchmark's event, then passes
the turn on. Only one runs at a time, so N changes nothing but how many processes' memory the
cores' caches must hold. It prints the CPU per request (every thread of the processes, and the
request's own thread alone) at each N, for the collector's request path (its web worker, the
sender process left out) and for bare Flask (``bench/reference.py``)::

    python bench/turns.py [--requests 20000] [--workers 2,8]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="turns-metrics-"))

from bench.cost import environ, start_response  # noqa: E402

WARM = 500  # requests each process serves before it counts


def build(target: str) -> object:
    """The app as a worker holds it; the collector's with a sender process beside (none here)."""
    if target == "reference":
        from bench.reference import app
        return app
    os.environ.update(COLLECTOR_SENDER="process", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",  # no Kafka: never sent
                      COLLECTOR_SPOOL_DIR=os.environ["TURNS_SPOOL"])
    from app import create_app
    return create_app()


def serve(target: str, turn_in: int, turn_out: int, count: int, report: int) -> None:
    """In a child: take ``count`` turns after the warm-up, then write its CPU seconds (all threads, this thread)."""
    app = build(target)
    for i in range(count + WARM):
        if i == WARM:
            began = (time.process_time(), time.thread_time())
        os.read(turn_in, 1)
        for _ in app(environ(os.getpid() * 10**6 + i), start_response):  # type: ignore[operator]
            pass
        os.write(turn_out, b".")
    os.write(report, f"{time.process_time() - began[0]} {time.thread_time() - began[1]}\n".encode())


def ring(target: str, workers: int, requests: int) -> tuple[float, float]:
    """CPU µs per request with ``workers`` processes taking turns: all threads, the request's thread."""
    pipes = [os.pipe() for _ in range(workers)]
    report_r, report_w = os.pipe()
    count = requests // workers
    pids = []
    for k in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                serve(target, pipes[k][0], pipes[(k + 1) % workers][1], count, report_w)
            finally:
                os._exit(0)
        pids.append(pid)
    os.write(pipes[0][1], b".")  # the first turn
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(report_w)
    lines = os.read(report_r, 1 << 16).decode().split()
    cpu = [float(v) for v in lines[0::2]], [float(v) for v in lines[1::2]]
    return sum(cpu[0]) / (count * workers) * 1e6, sum(cpu[1]) / (count * workers) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests counted, in all, at each N")
    parser.add_argument("--workers", default="2,8", help="the process counts, comma-separated")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    print("| app | processes | CPU per request, µs (all threads) | the request's thread alone, µs |")
    print("|---|---:|---:|---:|")
    for target in ("collector", "reference"):
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="turns-spool-") as spool:
                os.environ["TURNS_SPOOL"] = spool
                every, own = ring(target, n, args.requests)
            print(f"| {target} | {n} | {every:.0f} | {own:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
