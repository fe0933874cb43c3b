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
import importlib.metadata
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: python bench/run.py
    sys.path.insert(0, str(ROOT))

from dev.broker import Broker, free_port, wait_for_port  # noqa: E402
from dev.events import read_records  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
WARM_AID = "999999999999"  # the warm-up's account: its events are not counted


@dataclass(frozen=True)
class Target:
    """One app to drive: how gunicorn loads it, what wrk posts where, whether its events must reach Kafka."""

    name: str
    app: str
    path: str  # "{aid}" is filled in with a fresh account id per run
    kafka: bool
    body: str = "EVENT"  # a Lua expression for the request body (see LUA: EVENT, batch(n))
    status: int = 204  # the answer of a request whose events were all queued
    events: int = 1  # events per request
    env: tuple[tuple[str, str], ...] = ()  # settings of this variant
    accounts: int = 1  # events spread over this many accounts, in turn
    baseline: bool = False  # served from the worktree of --baseline


TARGETS = [
    Target("collector", "wsgi:app", "/collect/{aid}/1/event", kafka=True),
    Target("reference", "bench.reference:app", "/collect/{aid}/1/event", kafka=False),
    Target("batches of 50", "wsgi:app", "/collect/{aid}/1/events", True, "batch(50)", 200, 50),
]

VARIANT_CONNECTIONS = 16


def variants(baseline: str | None) -> list[Target]:
    """The write-ahead log's variants, and the commit before it when asked."""
    single = TARGETS[0]
    found = [Target("collector, fsync before every 204", single.app, single.path, True,
                    env=(("COLLECTOR_SPOOL_FSYNC_MS", "0"),))]
    for workers in ("2", "8"):
        for accounts in (1, 1000):
            for sender in ("worker", "host"):
                found.append(Target(f"sender per {sender}, {workers} workers, {accounts} account(s)", single.app,
                                    single.path, True, accounts=accounts,
                                    env=(("WEB_CONCURRENCY", workers), ("COLLECTOR_SENDER", sender))))
            if baseline:
                found.append(Target(f"{baseline}, {workers} workers, {accounts} account(s)", single.app, single.path,
                                    True, accounts=accounts, env=(("WEB_CONCURRENCY", workers),), baseline=True))
    return found


LUA = r"""-- written by bench/run.py: POST events with unique instance ids, count the @STATUS@ answers exactly
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local EVENT_HEAD = '{"action":"view","object":"form","vendor":"Vendor A","product":"Product 1","instance_id":"'
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  sent, ok, other = 0, 0, 0
end

function request()
  sent = sent + 1
  local uid = "bench-" .. tid .. "-" .. sent
  local EVENT = EVENT_HEAD .. uid .. '"}'
  local function batch(n)
    local events = {}
    for i = 1, n do events[i] = EVENT_HEAD .. uid .. "-" .. i .. '"}' end
    return "[" .. table.concat(events, ",") .. "]"
  end
  return wrk.format(nil, @PATH@, nil, @BODY@)
end

function response(status, headers, body)
  if status == @STATUS@ then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_sum, other_sum = 0, 0
  for _, thread in ipairs(threads) do
    ok_sum = ok_sum + thread:get("ok")
    other_sum = other_sum + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format("BENCH ok=%d other=%d duration_us=%d p50_us=%d p99_us=%d socket_errors=%d\n",
    ok_sum, other_sum, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Result:
    """One measured run of one app at one connection count."""

    events_per_s: float
    p50_ms: float
    p99_ms: float
    ok: int  # events answered as queued (204), as wrk saw them
    other: int  # requests answered otherwise
    socket_errors: int
    logged: int  # events answered as queued, in gunicorn's access log
    kafka: int | None  # distinct event ids found on the topic afterwards
    rss_mib: float  # the largest peak RSS (VmHWM) among the workers
    cpu: dict[str, float]  # % of one core during the run: gunicorn, broker, wrk, rest of the machine
    notes: list[str] = field(default_factory=list)
    kept: int = 0  # events still in the write-ahead log when the collector stopped (sent at its next start)

    @property
    def delivered(self) -> bool:
        """Every event gunicorn answered as queued is in Kafka or still in the log on disk (so at
        least those wrk saw)."""
        return self.kafka is None or self.kafka + self.kept == self.logged >= self.ok

    @property
    def check(self) -> str:
        """The verdict: ok, MISMATCH (Kafka lacks events), or FAILED (requests refused, or none answered)."""
        if not self.delivered or any("MISMATCH" in note for note in self.notes):
            return "MISMATCH"
        return "FAILED" if self.other or not self.ok or any("FAILED" in note for note in self.notes) else "ok"


# -- /proc ---------------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first); [] if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process, in MiB (0 if it is gone)."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0.0
    return int(match.group(1)) / 1024 if match else 0.0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / TICK


def usage(gunicorn: list[int], broker: int) -> dict[str, float]:
    """CPU seconds so far of gunicorn's processes, the broker, our finished children (wrk), the machine; the time."""
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"gunicorn": sum(map(cpu_seconds, gunicorn)), "broker": cpu_seconds(broker),
            "wrk": finished.ru_utime + finished.ru_stime, "machine": machine_busy_seconds(), "time": time.monotonic()}


# -- the servers and the load ----------------------------------------------------------------

class Gunicorn:
    """``gunicorn -c gunicorn.conf.py APP`` with only ``--bind`` overridden, its log in a file."""

    def __init__(self, app: str, env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.app, self.env, self.log, self.cwd = app, env, log, cwd
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        """Start it; return once the port listens and every worker is forked."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", self.app],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, proc=self.proc)
        expected = int(self.env.get("WEB_CONCURRENCY", "2"))
        deadline = time.monotonic() + 30
        while len(self.workers()) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def workers(self) -> list[int]:
        """The pids of the worker processes now."""
        assert self.proc is not None
        return children(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM: the workers flush what they hold to Kafka (or the spool) and exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk_command(url: str, script: Path, connections: int, seconds: int) -> list[str]:
    """The wrk command line for one run."""
    return ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "--latency", "-s", str(script), url]


def wrk_figures(stdout: str) -> dict[str, int]:
    """The numbers the Lua script's done() prints."""
    match = re.search(r"^BENCH (.*)$", stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{stdout}")
    return {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}


def create_topics(servers: str, topics: list[str]) -> None:
    """Create topics in one request, as production clusters provision them (one partition each,
    so that reading a thousand back stays quick)."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=servers, api_version=(3, 9))
    try:
        admin.create_topics([NewTopic(t, 1, 1) for t in topics], raise_errors=False)
    finally:
        admin.close()


def script_for(target: Target, aid: str) -> str:
    """The Lua script: the body, the status counted as queued, and the path when accounts take turns."""
    path = "nil" if target.accounts == 1 else (
        f'"/collect/" .. ({int(aid)} + sent % {target.accounts}) .. "/1/{target.path.rsplit("/", 1)[1]}"')
    return LUA.replace("@BODY@", target.body).replace("@STATUS@", str(target.status)).replace("@PATH@", path)


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


def events_in_log(spool: Path) -> set[str]:
    """The event ids a stopped collector left in its write-ahead log, past each segment's
    acknowledged position (or, for a commit before the log, in its spool's JSON lines)."""
    from app.reader import records_in
    from app.segment import Segment, segments

    ids = {orjson.loads(line)["event_id"] for f in spool.glob("*.jsonl") for line in f.read_bytes().splitlines()}
    for path in segments(spool):
        fd = os.open(path, os.O_RDONLY)
        try:
            segment = Segment(path, fd, os.fstat(fd).st_size, sealed=True)
            ids |= {orjson.loads(r.value)["event_id"] for r in records_in(segment, segment.acked())}
        finally:
            os.close(fd)
    return ids


def event_ids(servers: str, topics: list[str], expected: int) -> set[str]:
    """The distinct event ids ``topics`` hold (delivery is at least once: duplicates are possible)."""
    if len(topics) > 1:
        return {orjson.loads(v)["event_id"] for v in read_all(servers, topics, expected)}
    records = read_records(servers, topics[0], count=expected, timeout=60)
    ids = {orjson.loads(r.value)["event_id"] for r in records}
    if len(ids) < len(records):  # duplicates: read on until the topic is quiet, for the rest
        ids = {orjson.loads(r.value)["event_id"] for r in read_records(servers, topics[0], timeout=60)}
    return ids


def read_all(servers: str, topics: list[str], expected: int, timeout: float = 90) -> list[bytes]:
    """The values of every record of ``topics`` (one partition each), with one consumer."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False, api_version=(3, 9))
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(t, 0) for t in topics])
        consumer.seek_to_beginning()
        deadline = quiet = time.monotonic() + timeout
        while time.monotonic() < min(deadline, quiet):
            for batch in consumer.poll(timeout_ms=500).values():
                values += [r.value for r in batch]
                quiet = time.monotonic() + 5  # read on until nothing came for 5 s
            if len(values) >= expected:
                quiet = min(quiet, time.monotonic() + 2)
    finally:
        consumer.close()
    return values


# -- the report ----------------------------------------------------------------------------

def combine(results: list[Result]) -> Result:
    """Several runs as one: the median of each measure, the total of each count."""
    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    kafka = [r.kafka for r in results]
    return Result(
        median([r.events_per_s for r in results]), median([r.p50_ms for r in results]),
        median([r.p99_ms for r in results]),
        sum(r.ok for r in results), sum(r.other for r in results), sum(r.socket_errors for r in results),
        sum(r.logged for r in results), None if None in kafka else sum(k for k in kafka if k is not None),
        median([r.rss_mib for r in results]),
        {k: median([r.cpu[k] for r in results]) for k in results[0].cpu},
        [f"run {i + 1}: {note}" if len(results) > 1 else note for i, r in enumerate(results) for note in r.notes]
        + [f"{check} in a run" for check in ("MISMATCH", "FAILED")
           if len(results) > 1 and any(r.check == check for r in results)],
        sum(r.kept for r in results),
    )


def machine() -> str:
    """CPU model, cores, memory, OS, Python and tool versions, the commit."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10).stdout.split()
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return (f"{model.group(1) if model else platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores, "
            f"{int(mem.group(1)) / 2**20 if mem else 0:.1f} GiB; Linux {platform.release()}; "
            f"Python {platform.python_version()}, gunicorn {importlib.metadata.version('gunicorn')}, "
            f"Flask {importlib.metadata.version('flask')}, wrk {wrk[1] if len(wrk) > 1 else '?'}; "
            f"commit {commit.stdout.strip() or '?'}{' with local changes' if dirty else ''}")


def per_event(r: Result) -> str:
    """The CPU gunicorn's processes spent per event queued (per request for the reference), in µs."""
    return f"{r.cpu['gunicorn'] * 10_000 / r.events_per_s:.0f}" if r.events_per_s else "-"


def report(rows: dict[tuple[int, str], Result], args: argparse.Namespace, command: str, chart: bool) -> str:
    """The Markdown page: what ran, where, and the two tables."""
    levels = args.connections
    runs = f"the median of {args.runs} runs (counts: the total)" if args.runs > 1 else "one run"
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; run it again rather than edit this.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine()}",
        "- Setup: for each connection count, each app on a fresh `gunicorn -c gunicorn.conf.py --bind"
        " 127.0.0.1:PORT APP` (sync workers, `WEB_CONCURRENCY`"
        f" {os.environ.get('WEB_CONCURRENCY', '2')}, a `COLLECTOR_REGISTRY` listing the account), the embedded"
        " Tansu broker, and"
        f" `wrk -t2 -cN -d{args.duration}s` after a {args.warmup} s warm-up, all on these cores and loopback.",
        "- `collector` is `wsgi:app`; `reference` is `bench.reference:app`, a Flask route that only reads the"
        " body and answers 204: the ceiling of this stack. Every request posts one event with its own"
        " `instance_id`.",
        f"- Figures: {runs}. events/s counts only the events answered as queued (204; for batches, 200 with"
        " every event accepted). Latency is wrk's, in ms, per request (a batch is one request).",
        "",
        "## Throughput and latency",
        "",
    ]
    names = [t.name for t in TARGETS]
    others = [n for n in names if n != "reference"]
    header = ([f"{n} events/s" for n in names] + [f"{n} / reference" for n in others]
              + [f"{n} {p}" for n in names for p in ("p50", "p99")])
    lines += ["| connections | " + " | ".join(header) + " |", "|---:" * (len(header) + 1) + "|"]
    for c in levels:
        ref = rows[c, "reference"].events_per_s
        cells = ([f"{rows[c, n].events_per_s:.0f}" for n in names]
                 + [f"{rows[c, n].events_per_s / ref:.2f}" if ref else "-" for n in others]
                 + [f"{ms:.1f}" for n in names for ms in (rows[c, n].p50_ms, rows[c, n].p99_ms)])
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    variant_rows = [(n, r) for (c, n), r in rows.items() if c == VARIANT_CONNECTIONS and n not in names]
    if variant_rows:
        reference = rows.get((VARIANT_CONNECTIONS, "reference"))
        single = rows.get((VARIANT_CONNECTIONS, "collector"))
        lines += [
            "",
            f"## The write-ahead log's variants, at {VARIANT_CONNECTIONS} connections",
            "",
            "Each on a fresh gunicorn as above, with only the settings the name gives changed: the fsync before"
            " every answer (`COLLECTOR_SPOOL_FSYNC_MS=0`; the default fsyncs once a second), and where the Kafka"
            " producer lives (`COLLECTOR_SENDER`: one per worker, or one per host that every worker's log goes"
            " through), at 2 and 8 workers (`WEB_CONCURRENCY`), with each request's account taking turns among 1"
            " or 1,000 accounts (each a topic of one partition). A commit named first is the collector before"
            " the write-ahead log, served from a worktree of that commit in the same run. When the collector"
            " stops (a shutdown gives it `COLLECTOR_SHUTDOWN_FLUSH_MS` to deliver), an event answered as"
            " queued must be in Kafka or, with the write-ahead log, still in the log for the next start (the"
            " notes say how many: the sender was behind, and events/s is then more than that setup can"
            " deliver for long); `check` is MISMATCH otherwise (the commit before kept the rest in memory).",
            "",
            "| variant | events/s | / collector | / reference | p50 | p99 | gunicorn CPU per event, µs"
            " | peak RSS per worker, MiB | check |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, r in variant_rows:
            to_single = r.events_per_s / single.events_per_s if single else 0
            to_reference = r.events_per_s / reference.events_per_s if reference else 0
            lines.append(f"| {name} | {r.events_per_s:.0f} | {to_single:.2f} | {to_reference:.2f} | {r.p50_ms:.1f}"
                         f" | {r.p99_ms:.1f} | {per_event(r)} | {r.rss_mib:.0f} | {r.check} |")
    lines += [
        "",
        "## Delivery and resources",
        "",
        "Events answered as queued (204) as wrk saw them may fall short of those in gunicorn's access log by up"
        " to the connection count: the requests in flight when wrk stops are still answered, and queued, after"
        " wrk has gone. Every event gunicorn answered as queued must be in Kafka (distinct `event_id`s), or still"
        " in the write-ahead log when the collector stopped (counted past each segment's acknowledged position):"
        " `check` is MISMATCH otherwise, and FAILED when requests got another answer or none was answered."
        " CPU is in % of one core (the machine has"
        f" {os.cpu_count()}: {100 * (os.cpu_count() or 1)} % is all of it); `rest` is everything else on the"
        " machine, such as other people's work. CPU per event is gunicorn's (its workers' threads included)"
        " divided by the events queued: it moves less than throughput when other work shares the cores.",
        "",
        "| connections | app | queued, per wrk | queued, per gunicorn's log | in Kafka | check"
        " | peak RSS per worker, MiB | CPU gunicorn | gunicorn CPU per event, µs | CPU broker | CPU wrk | CPU rest"
        " | notes |",
        "|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (c, name), r in sorted(rows.items()):
        kafka = "-" if r.kafka is None else f"{r.kafka}" + (f" + {r.kept} in the log" if r.kept else "")
        lines.append(f"| {c} | {name} | {r.ok} | {r.logged} | {kafka} | {r.check} | {r.rss_mib:.0f}"
                     f" | {r.cpu['gunicorn']:.0f} | {per_event(r)} | {r.cpu['broker']:.0f} | {r.cpu['wrk']:.0f}"
                     f" | {r.cpu['rest']:.0f} | {'; '.join(r.notes)} |")
    if chart:
        lines += ["", "![Throughput and p99 latency against connections](benchmarks.png)"]
    profile = Path(__file__).with_name("profile.md")  # written by hand: a profile is not rerun here
    if profile.exists():
        lines += ["", profile.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def draw(rows: dict[tuple[int, str], Result], path: Path) -> None:
    """Throughput and p99 latency against connections, for both apps, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({c for c, name in rows if name in {t.name for t in TARGETS}})
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in [t.name for t in TARGETS]:
        left.plot(levels, [rows[c, name].events_per_s for c in levels], marker="o", label=name)
        right.plot(levels, [rows[c, name].p99_ms for c in levels], marker="o", label=name)
    for ax, title in ((left, "throughput, events/s queued"), (right, "p99 latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("wrk connections")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    parser.add_argument("--no-variants", action="store_true", help="only the main table")
    parser.add_argument("--variant", action="append", default=[], help="only the variants whose name has this")
    parser.add_argument("--baseline", default=env("BENCH_BASELINE") or None,
                        help="a git ref of the collector to measure beside the variants")
    args = parser.parse_args(argv)
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
        rows = {key: combine(runs) for key, runs in results.items()}
        args.out.mkdir(parents=True, exist_ok=True)
        if not args.no_chart:
            draw(rows, args.out / "benchmarks.png")
        text = report(rows, args, command, chart=not args.no_chart)
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
