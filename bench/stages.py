"""Where each event's CPU goes, stage by stage: ``python bench/stages.py [--batch N] [--seconds S]``.

Serves the collector on a fresh gunicorn (2 workers, the embedded broker, a registry), drives it
with wrk at 8 connections, and samples every process of it with py-spy (the thread holding each
interpreter lock, 100 Hz) while wrk runs. Each sample is put in the first stage its stack shows
innermost frame out; the samples of a stage times the sampling period, over the events answered
as queued, is its CPU per event. Prints a Markdown table (docs/benchmarks.md keeps one).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import LUA, Gunicorn, cpu_seconds, wrk_command, wrk_figures  # noqa: E402
from dev.broker import Broker  # noqa: E402

RATE = 100  # py-spy samples per second

# (stage, a fragment of a frame that puts a sample in it): a stack is classed by the first of
# these that one of its frames matches (kafka-python's I/O thread after its sends and callbacks).
STAGES = [
    ("kafka-python: send (partitioner, accumulator, futures)", "send (kafka/producer/kafka.py"),
    ("kafka-python: callbacks and settling", "settle (app/lanes.py"),
    ("kafka-python: callbacks and settling", "kafka/producer/future.py"),
    ("kafka-python: its I/O thread", "kafka/"),
    ("the sender: reading the log", "app/reader.py"),
    ("the sender: the rest of a pass", "app/sender.py"),
    ("the sender: the rest of a pass", "app/lanes.py"),
    ("the sender: the rest of a pass", "app/ledger.py"),
    ("metrics", "app/metrics.py"),
    ("metrics", "prometheus_client"),
    ("the append (record, framing, write)", "append (app/log.py"),
    ("the append (record, framing, write)", "put (app/delivery.py"),
    ("the registry check", "app/registry.py"),
    ("validation and curation", "app/event.py"),
    ("validation and curation", "app/schemas.py"),
    ("validation and curation", "marshmallow"),
    ("validation and curation", "curate (app/collect.py"),
    ("reading the body", "app/body.py"),
    ("the view's rest (ids, errors, answer)", "app/collect.py"),
    ("Flask and Werkzeug", "flask/"),
    ("Flask and Werkzeug", "werkzeug/"),
    ("gunicorn (parsing, access log, socket)", "gunicorn/"),
]


# Innermost frames of a thread that waits (py-spy counts them here as if on the CPU).
IDLE = ("select (selectors.py", "Condition.wait (threading.py", "close_graceful (gunicorn/util.py:312)",
        "accept (socket.py", "sleep (", "INotify.read (")


def stage_of(stack: str) -> str:
    """The stage of one collapsed stack (frames outermost first, ';'-separated); "" if it waits."""
    if any(idle in stack.rsplit(";", 1)[-1] for idle in IDLE):
        return ""
    for stage, fragment in STAGES:
        if fragment in stack:
            return stage
    return "other (threads' loops, the interpreter)"


def role(pid: int) -> str:
    """What a process of gunicorn's is, by the title gunicorn gives it (setproctitle)."""
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    for words, name in (("dirty-worker", "the sender process"), ("worker [", "web workers"),
                        ("dirty-arbiter", "gunicorn's master and dirty arbiter")):
        if words in title:
            return name
    return "gunicorn's master and dirty arbiter"


def main_thread_seconds(pid: int) -> float:
    """User plus system CPU time of a process's main thread so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample(pids: list[int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on each of ``pids`` for ``seconds``, collapsed stacks into ``out``/<pid>.txt."""
    spy = str(Path(sys.executable).parent / "py-spy")
    return [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE),
                              "--gil", "--format", "raw", "--output", str(out / f"{pid}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pid in pids]


def tally(out: Path) -> Counter[str]:
    """Samples per stage over every file in ``out``."""
    found: Counter[str] = Counter()
    for path in out.glob("*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                found[stage_of(stack)] += int(count)
    found.pop("", None)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=0, help="events per request (0: single events)")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=1, help="each request's account in turn among this many")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy: only each process's CPU per event")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="stages-"))
    body, status, path = ("EVENT", 204, "event") if not args.batch else (f"batch({args.batch})", 200, "events")
    script = work / "post.lua"
    turns = "nil" if args.accounts == 1 else f'"/collect/" .. (1 + sent % {args.accounts}) .. "/1/{path}"'
    script.write_text(LUA.replace("@BODY@", body).replace("@STATUS@", str(status)).replace("@PATH@", turns))
    registry = "".join(f'[accounts."{1 + a}"]\ntrackers = ["1"]\n' for a in range(args.accounts))
    (work / "registry.toml").write_text(registry)
    (work / "metrics").mkdir()
    with Broker() as broker:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.servers, "COLLECTOR_SPOOL_DIR": str(work / "spool"),
               "COLLECTOR_REGISTRY": str(work / "registry.toml"), "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics")}
        server = Gunicorn("wsgi:app", env, work / "gunicorn.log").start()
        try:
            url = f"http://127.0.0.1:{server.port}/collect/1/1/{path}"
            subprocess.run(wrk_command(url, script, args.connections, 2), capture_output=True, check=True)
            assert server.proc is not None
            pids = [server.proc.pid, *server.workers()]
            wrk = subprocess.Popen(wrk_command(url, script, args.connections, args.seconds + 2),
                                   stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            before = {p: (cpu_seconds(p), main_thread_seconds(p)) for p in pids}
            if args.no_profile:  # py-spy's own CPU on these cores weighs on the figures, the more processes the more
                time.sleep(args.seconds)
            for spy in [] if args.no_profile else sample(pids, args.seconds, work):
                spy.wait()
            used = {p: cpu_seconds(p) - before[p][0] for p in pids}
            requests = {p: main_thread_seconds(p) - before[p][1] for p in pids}  # a sync worker's requests
            cpu = sum(used.values())
            roles = {p: role(p) for p in pids}
            out, _ = wrk.communicate()
        finally:
            server.stop()
    events = wrk_figures(out)["ok"] * max(1, args.batch) * args.seconds / (args.seconds + 2)
    found = tally(work)
    total = sum(found.values()) or 1
    kind = f"batches of {args.batch}" if args.batch else "single events"
    shared = "" if args.no_profile else f", shared by {total} busy samples"
    print(f"{kind}: {events / args.seconds:.0f} events/s over {args.seconds} s; gunicorn's CPU {cpu:.1f} s{shared}"
          f" ({work})\n")
    print("| stage | CPU per event, µs | share |\n|---|---:|---:|")
    for stage, count in found.most_common():
        print(f"| {stage} | {cpu * count / total / events * 1e6:.1f} | {100 * count / total:.1f} % |")
    print(f"| all | {cpu / events * 1e6:.1f} | 100 % |\n\n| process | CPU per event, µs |\n|---|---:|")
    for name in sorted(set(roles.values())):
        print(f"| {name} | {sum(u for p, u in used.items() if roles[p] == name) / events * 1e6:.1f} |")
    web = [p for p in pids if roles[p] == "web workers"]
    print(f"| web workers: the thread that serves requests | {sum(requests[p] for p in web) / events * 1e6:.1f} |")
    print(f"| web workers: their other threads | {sum(used[p] - requests[p] for p in web) / events * 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
