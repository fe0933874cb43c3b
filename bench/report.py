"""The benchmarks' report: docs/benchmarks.md and its chart."""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.load import ROOT, TARGETS, VARIANT_CONNECTIONS


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



DELIVERY = """
Each setup on a fresh collector (`bench/delivery.py`, its default `COLLECTOR_SENDER=process`), wrk at 8
connections at full speed for `--delivery` seconds, then a wait until the collector's own `delivered`
count (`/metrics`) reaches its `accepted` count. Accepted events/s is over the load; delivered events/s
over the load and that catch-up. For single events, then: wrk held (its `delay()`) at about half of the
delivered rate, and the delivery latency's p50 and p99 over it (`collector_delivery_seconds`, from the
204 to Kafka's acknowledgement, interpolated in its buckets as Prometheus does); then 0.9 of the
delivered rate held for `--hold` seconds: "steady" when the log's backlog did not grow meanwhile (the
capacity is at least that), "grew" otherwise. Accounts take turns per request; each has a topic of one
partition.
"""


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



def report(rows: dict[tuple[int, str], Result], args: argparse.Namespace, command: str, chart: bool,
           delivered: str = "") -> str:
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
    if delivered.count("\n") > 1:
        lines += ["", "## What a user gets: delivered, not only answered", "", DELIVERY.strip(), "", delivered]
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

