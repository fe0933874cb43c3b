"""`make bench`: the collector and a bare Flask app under the production gunicorn config, driven by wrk.

For each connection count, each app is served by a fresh ``gunicorn -c gunicorn.conf.py``
(only ``--bind`` overridden) against the embedded broker and driven by wrk for a fixed time;
the collector's events are then read back from Kafka and counted. Results go to
``OUT/benchmarks.md`` and ``OUT/benchmarks.png``. Settings: BENCH_DURATION (seconds per
level, 10), BENCH_CONNECTIONS (4,16,64), BENCH_RUNS (1; the median is reported),
BENCH_WARMUP (seconds of wrk before each measured run, 1), or the matching options.

Then, at 16 connections, the variants: the fsync per answer (``COLLECTOR_SPOOL_FSYNC_MS=0``),
and both producer placements (``COLLECTOR_SENDER`` worker or host) at 2 and 8 workers with
the events of 1 account or spread over 1,000; with BENCH_BASELINE=<git ref> (``--baseline``)
also that commit of the collector, served from a worktree, beside them.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python bench/run.py
    sys.path.insert(0, str(ROOT))

from bench import delivery  # noqa: E402
from bench.load import (  # noqa: E402
    TARGETS,
    VARIANT_CONNECTIONS,
    WARM_AID,
    Gunicorn,
    Target,
    peak_rss_mib,
    script_for,
    usage,
    wrk_command,
    wrk_figures,
)
from bench.readback import create_topics, event_ids, events_in_log  # noqa: E402
from bench.report import Result, combine, draw, report  # noqa: E402
from dev.broker import Broker  # noqa: E402

SENDERS = {"process": "process per host", "host": "thread in one worker per host"}
NO_SENDER = "collector without its sender process (nothing delivered: the request path alone)"


def variants(baseline: str | None) -> list[Target]:
    """The write-ahead log's variants, and the commit before it when asked."""
    single = TARGETS[0]
    found = [Target("collector, fsync before every 204", single.app, single.path, True,
                    env=(("COLLECTOR_SPOOL_FSYNC_MS", "0"),)),
             # gunicorn started without its dirty worker: events are only appended, nothing is sent
             Target(NO_SENDER, single.app, single.path, False, env=(("GUNICORN_CMD_ARGS", "--dirty-workers 0"),)),
             # bare Flask at 8 workers: what more processes on these cores cost any app
             Target("reference, 8 workers", "bench.reference:app", single.path, False,
                    env=(("COLLECTOR_SENDER", "worker"), ("WEB_CONCURRENCY", "8")))]
    if baseline:  # the commit before as it runs by default, beside the main table's collector and batches
        batches = TARGETS[2]
        found += [Target(f"{baseline}, by default", single.app, single.path, True, baseline=True),
                  Target(f"{baseline}, batches of 50, by default", batches.app, batches.path, True, batches.body,
                         batches.status, batches.events, baseline=True)]
    for workers in ("2", "8"):
        for accounts in (1, 1000):
            for sender in ("process", "host"):
                found.append(Target(f"sender {SENDERS[sender]}, {workers} workers, {accounts} account(s)", single.app,
                                    single.path, True, accounts=accounts,
                                    env=(("WEB_CONCURRENCY", workers), ("COLLECTOR_SENDER", sender))))
            if baseline:  # the commit's sender thread in one worker (before the sender process, its default)
                found.append(Target(f"{baseline}, sender {SENDERS['host']}, {workers} workers, {accounts} account(s)",
                                    single.app, single.path, True, accounts=accounts, baseline=True,
                                    env=(("WEB_CONCURRENCY", workers), ("COLLECTOR_SENDER", "host"))))
    return found




def measure(target: Target, connections: int, args: argparse.Namespace, broker: Broker,
            workdir: Path, script: Path) -> Result:
    """Serve ``target`` on a fresh gunicorn, drive it with wrk, count what reached Kafka."""
    aid = str(uuid.uuid4().int % 10**11 + 1)
    accounts = [str(int(aid) + i) for i in range(target.accounts)]
    topics = [f"events.{a}" for a in accounts]
    if target.kafka:
        create_topics(broker.servers, topics)
    script.write_text(script_for(target, aid))
    spool = workdir / f"spool-{aid}"
    registry = workdir / f"registry-{aid}.toml"  # production runs with one, so the bench does too
    registry.write_text("".join(f'[accounts."{a}"]\ntrackers = ["1"]\n' for a in (*accounts, WARM_AID)))
    metrics = workdir / f"metrics-{aid}"  # prometheus_client's: must exist and start empty
    metrics.mkdir()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.servers, "COLLECTOR_SPOOL_DIR": str(spool),
           "COLLECTOR_REGISTRY": str(registry), "PROMETHEUS_MULTIPROC_DIR": str(metrics), **dict(target.env)}
    log = workdir / f"{target.name}-{connections}-{aid}.log"
    server = Gunicorn(target.app, env, log, cwd=args.baseline_root if target.baseline else ROOT).start()
    url = f"http://127.0.0.1:{server.port}"
    notes: list[str] = []
    try:
        if args.warmup:
            warm = wrk_command(url + target.path.format(aid=WARM_AID), script, connections, args.warmup)
            subprocess.run(warm, capture_output=True, timeout=args.warmup + 60, check=True)
        assert server.proc is not None and broker.proc is not None
        workers = server.workers()
        before = usage([server.proc.pid, *workers], broker.proc.pid)
        wrk = subprocess.run(wrk_command(url + target.path.format(aid=aid), script, connections, args.duration),
                             capture_output=True, text=True, timeout=args.duration + 60, check=True)
        after = usage([server.proc.pid, *workers], broker.proc.pid)
        rss = max((peak_rss_mib(p) for p in server.workers()), default=0.0)
        if sorted(server.workers()) != sorted(workers):
            notes.append("a worker was replaced during the run")
    finally:
        server.stop()
    (workdir / f"{target.name}-{connections}-{aid}.wrk").write_text(wrk.stdout)
    wall = after["time"] - before["time"]
    cpu = {k: 100 * (after[k] - before[k]) / wall for k in ("gunicorn", "broker", "wrk", "machine")}
    cpu["rest"] = max(0.0, cpu.pop("machine") - sum(cpu.values()))
    figures = wrk_figures(wrk.stdout)
    text = log.read_text(errors="replace")
    # the access log's request line and status, in the text or the JSON log format
    accepted = rf'"POST /collect/(?:{"|".join(accounts)})/\S+ HTTP/1\.1\\?" {target.status} '
    logged = target.events * len(re.findall(accepted, text))
    if problems := len(re.findall(r'\[(?:WARNING|ERROR|CRITICAL)\]|"level": "(?:WARNING|ERROR|CRITICAL)"', text)):
        notes.append(f"{problems} warnings or errors in gunicorn's log")
    kafka = kept = None
    if target.kafka:
        ids = event_ids(broker.servers, topics, logged)
        kafka = len(ids)
        if kept := len(events_in_log(spool) - ids):  # the log may also hold some Kafka has: counted once
            notes.append(f"the sender was behind: {kept} events still in the log at the end, for the next start")
        if dead := list(spool.glob("dead-letter/*")):
            notes.append(f"{len(dead)} dead-letter files")
    if figures["other"] or figures["socket_errors"]:
        notes.append(f"{figures['other']} answers other than {target.status}, {figures['socket_errors']} socket errors")
    seconds = figures["duration_us"] / 1e6
    return Result(target.events * figures["ok"] / seconds, figures["p50_us"] / 1000, figures["p99_us"] / 1000,
                  target.events * figures["ok"],
                  figures["other"], figures["socket_errors"], logged, kafka, rss,
                  cpu, notes, kept or 0)



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options, each defaulting to its BENCH_* variable."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=int(env("BENCH_DURATION", "10")), help="seconds per level")
    parser.add_argument("--connections", default=env("BENCH_CONNECTIONS", "4,16,64"), help="comma-separated")
    parser.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "1")))
    parser.add_argument("--warmup", type=int, default=int(env("BENCH_WARMUP", "1")), help="seconds, 0 for none")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where benchmarks.md and .png go")
    parser.add_argument("--no-chart", action="store_true", help="write no PNG (no matplotlib needed)")
    parser.add_argument("--no-variants", action="store_true", help="only the main table (no variants, no delivery)")
    parser.add_argument("--variant", action="append", default=[], help="only the variants whose name has this")
    parser.add_argument("--baseline", default=env("BENCH_BASELINE") or None,
                        help="a git ref of the collector to measure beside the variants")
    parser.add_argument("--delivery", type=int, default=int(env("BENCH_DELIVERY", "20")),
                        help="seconds of full speed per delivery setup (bench/delivery.py), 0 for none")
    parser.add_argument("--hold", type=int, default=int(env("BENCH_HOLD", "60")),
                        help="seconds the delivery setups hold 0.9 of their delivered rate, 0 for none")
    args = parser.parse_args(argv)
    args.workers, args.accounts, args.sender, args.only = [2, 8], [1, 1000], "process", ""
    args.out = args.out.resolve()
    args.connections = sorted({int(c) for c in str(args.connections).split(",") if c.strip()})
    if args.duration < 1 or args.runs < 1 or args.warmup < 0 or not args.connections or min(args.connections) < 1:
        parser.error("duration, runs and connections must be at least 1, warmup at least 0")
    return args



def main(argv: list[str] | None = None) -> int:
    """Run every level for both apps, write the report and the chart; 1 on a MISMATCH or FAILED."""
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (apt-get install -y wrk)")
    out = args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out
    command = shlex.join([
        f"BENCH_DURATION={args.duration}", f"BENCH_CONNECTIONS={','.join(map(str, args.connections))}",
        f"BENCH_RUNS={args.runs}", f"BENCH_WARMUP={args.warmup}", "python", "bench/run.py", "--out", str(out),
        *(["--no-chart"] if args.no_chart else []), *(["--no-variants"] if args.no_variants else []),
        *(f"--variant={v}" for v in args.variant),
        *(["--baseline", args.baseline] if args.baseline else []),
        f"--delivery={args.delivery}", f"--hold={args.hold}",
    ])
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    script = workdir / "post.lua"
    results: dict[tuple[int, str], list[Result]] = {}
    ok = False
    try:
        if args.baseline:
            args.baseline_root = workdir / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(args.baseline_root),
                            args.baseline], check=True, capture_output=True)
        plan = [(c, t) for c in args.connections for t in TARGETS]
        plan += [(VARIANT_CONNECTIONS, t) for t in variants(args.baseline) if not args.no_variants
                 and (not args.variant or any(v in t.name for v in args.variant))]
        with Broker() as broker:
            broker.create_topic(f"events.{WARM_AID}")
            for run in range(args.runs):
                for c, target in plan:
                    print(f"bench: run {run + 1}/{args.runs}, {target.name}, {c} connections, "
                          f"{args.duration} s", file=sys.stderr, flush=True)
                    results.setdefault((c, target.name), []).append(measure(target, c, args, broker, workdir, script))
            wanted = args.delivery and not args.no_variants
            delivered = delivery.measure_all(broker.servers, workdir, args) if wanted else []
        rows = {key: combine(runs) for key, runs in results.items()}
        args.out.mkdir(parents=True, exist_ok=True)
        if not args.no_chart:
            draw(rows, args.out / "benchmarks.png")
        text = report(rows, args, command, chart=not args.no_chart, delivered=delivery.table(delivered))
        (args.out / "benchmarks.md").write_text(text)
        print(text)
        ok = all(r.check == "ok" for runs in results.values() for r in runs)
        if args.baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(args.baseline_root)],
                           capture_output=True)
        if not ok:
            print("bench: MISMATCH (events answered as queued but not in Kafka) or FAILED (requests refused)",
                  file=sys.stderr)
        return 0 if ok else 1
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench: logs kept in {workdir}", file=sys.stderr)



if __name__ == "__main__":
    sys.exit(main())
