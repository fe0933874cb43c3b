"""What the request path can reach on this stack: ``python bench/ceiling.py [--runs 3] [--ref 96f3b0f]``.

Issue 8 put the ceiling of single events at 0.94 of bare Flask: the collector of its day
(``--ref``, served from a worktree) with a Kafka producer that costs nothing (its tests' fake,
acknowledging at once), measured on a machine other work kept busy. This measures the same
thing again, beside bare Flask, that collector delivering to Kafka, and today's collector with
and without its sender process, each on a fresh ``gunicorn -c gunicorn.conf.py`` (2 workers,
the embedded broker), wrk at 16 connections, the runs interleaved; it prints each one's median
events/s, its share of bare Flask's, gunicorn's CPU per event and wrk's p99.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import WARM_AID, Gunicorn, Target, script_for, usage, wrk_command, wrk_figures  # noqa: E402
from bench.readback import create_topics  # noqa: E402
from dev.broker import Broker  # noqa: E402

CONNECTIONS = 16
# Written into the worktree of --ref: its collector with its tests' fake producer, which keeps nothing.
FREE = '''from tests.conftest import FakeKafkaAdmin, FakeKafkaProducer


class Free(FakeKafkaProducer):
    def send(self, topic, value=None, key=None):
        future = super().send(topic, value=value, key=key)
        self.sent.clear()
        return future


from app import create_app

app = create_app({"COLLECTOR_KAFKA_FACTORY": Free, "COLLECTOR_KAFKA_ADMIN_FACTORY": FakeKafkaAdmin})
'''


def apps(ref: str, tree: Path) -> list[tuple[str, str, Path, dict[str, str]]]:
    """(name, gunicorn's app, where it is served from, its settings), bare Flask first."""
    return [
        ("bare Flask (bench/reference.py)", "bench.reference:app", ROOT, {"COLLECTOR_SENDER": "worker"}),
        (f"{ref} with a producer that costs nothing", "free_producer:app", tree, {}),
        (f"{ref}, delivering to Kafka", "wsgi:app", tree, {}),
        ("the collector without its sender process (the request path alone)", "wsgi:app", ROOT,
         {"GUNICORN_CMD_ARGS": "--dirty-workers 0"}),
        ("the collector, delivering to Kafka", "wsgi:app", ROOT, {}),
    ]


def run(app: str, cwd: Path, settings: dict[str, str], broker: Broker, work: Path, seconds: int) -> tuple[float, ...]:
    """One run on a fresh gunicorn: events/s, gunicorn's CPU µs an event, p99 ms."""
    aid = str(uuid.uuid4().int % 10**11 + 1)
    create_topics(broker.servers, [f"events.{aid}", f"events.{WARM_AID}"])
    script = work / f"{aid}.lua"
    script.write_text(script_for(Target(app, app, "/collect/{aid}/1/event", False), aid))
    registry = work / f"{aid}.toml"
    registry.write_text("".join(f'[accounts."{a}"]\ntrackers = ["1"]\n' for a in (aid, WARM_AID)))
    (work / f"metrics-{aid}").mkdir()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.servers, "COLLECTOR_SPOOL_DIR": str(work / f"log-{aid}"),
           "COLLECTOR_REGISTRY": str(registry), "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{aid}"), **settings}
    server = Gunicorn(app, env, work / f"{aid}.log", cwd=cwd).start()
    url = f"{server.url}/collect/{{}}/1/event"
    try:
        subprocess.run(wrk_command(url.format(WARM_AID), script, CONNECTIONS, 1), capture_output=True, check=True)
        assert server.proc is not None and broker.proc is not None
        pids = [server.proc.pid, *server.workers()]
        before = usage(pids, broker.proc.pid)
        wrk = subprocess.run(wrk_command(url.format(aid), script, CONNECTIONS, seconds), capture_output=True,
                             text=True, check=True)
        after = usage(pids, broker.proc.pid)
    finally:
        server.stop()
    figures = wrk_figures(wrk.stdout)
    if figures["other"] or figures["socket_errors"]:
        raise SystemExit(f"{app}: {figures['other']} other answers, {figures['socket_errors']} socket errors")
    ok = figures["ok"]
    return ok / (figures["duration_us"] / 1e6), 1e6 * (after["gunicorn"] - before["gunicorn"]) / ok, \
        figures["p99_us"] / 1000


def table(results: dict[str, list[tuple[float, ...]]]) -> str:
    """The medians, as Markdown."""
    medians = {name: [statistics.median(r[i] for r in runs) for i in range(3)] for name, runs in results.items()}
    bare = next(iter(medians.values()))[0]
    lines = ["| app, 16 connections | events/s | / bare Flask | gunicorn CPU per event, µs | p99, ms |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {m[0]:.0f} | {m[0] / bare:.2f} | {m[1]:.0f} | {m[2]:.1f} |" for name, m in medians.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--ref", default="96f3b0f", help="the commit issue 8 measured with a free producer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ceiling-") as tmp, Broker() as broker:
        work, tree = Path(tmp), Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), args.ref],
                       check=True, capture_output=True)
        try:
            (tree / "free_producer.py").write_text(FREE)
            results: dict[str, list[tuple[float, ...]]] = {name: [] for name, *_ in apps(args.ref, tree)}
            for i in range(args.runs):
                for name, app, cwd, settings in apps(args.ref, tree):
                    results[name].append(run(app, cwd, settings, broker, work, args.seconds))
                    print(f"run {i + 1}: {name}: {results[name][-1][0]:.0f} events/s", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    print(f"Medians of {args.runs} interleaved runs of {args.seconds} s:\n\n{table(results)}")


if __name__ == "__main__":
    main()
