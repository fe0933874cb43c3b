"""What a user gets: events delivered to Kafka, not only answered. ``python bench/delivery.py``.

For each setup (workers, accounts, single events or batches), on a fresh gunicorn against the
embedded broker: wrk at full speed for BENCH_DURATION seconds, then a wait until the collector's
own ``delivered`` count reaches its ``accepted`` count (``/metrics``). Accepted events/s is over
the load; delivered events/s is over the load and the catch-up. Then, for single events, the
delivery latency (``collector_delivery_seconds``) at half of the delivered rate, and whether the
host holds 0.9 of it for BENCH_HOLD seconds without its log growing: that rate is its capacity.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.load import TARGETS, Gunicorn, Target, script_for, wrk_command, wrk_figures  # noqa: E402
from bench.readback import create_topics  # noqa: E402
from dev.broker import Broker  # noqa: E402

EVENTS = re.compile(rb'^collector_events_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)
BUCKET = re.compile(rb'^collector_delivery_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)
BACKLOG = re.compile(rb"^collector_spool_backlog_bytes ([0-9.e+]+)$", re.M)
CONNECTIONS = 8


@dataclass
class Delivery:
    """One setup's figures."""

    accepted: float  # events/s answered as queued, over the load
    delivered: float  # events/s acknowledged by Kafka, over the load and the catch-up
    at_stop: float  # the share of the accepted events delivered when the load stopped
    catch_up_s: float  # from the load's end until every accepted event was delivered
    p50_ms: float = 0.0  # the delivery latency at half of ``delivered`` (single events only)
    p99_ms: float = 0.0
    light: float = 0.0  # the rate that latency was measured at, events/s
    held: float = 0.0  # the rate held for a while (0.9 of ``delivered``) ...
    grew: bool = False  # ... and whether the log grew meanwhile (then ``held`` is above capacity)

    @property
    def share(self) -> float:
        return self.delivered / self.accepted if self.accepted else 0.0


def scrape(url: str) -> bytes:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as answer:
        return answer.read()  # type: ignore[no-any-return]


def events(text: bytes) -> dict[str, float]:
    return {m[1].decode(): float(m[2]) for m in EVENTS.finditer(text)}


def buckets(text: bytes) -> list[tuple[float, float]]:
    return sorted((float(m[1]), float(m[2])) for m in BUCKET.finditer(text))


def backlog(text: bytes) -> float:
    return sum(float(m[1]) for m in BACKLOG.finditer(text))


def quantile(q: float, before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float:
    """The q-quantile of the observations between two scrapes, interpolated in its bucket (as
    Prometheus's ``histogram_quantile`` does), in seconds."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = counts[-1][1] if counts else 0
    if not total:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in counts:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def load(target: Target, url: str, script: Path, seconds: int, rate: float = 0.0) -> None:
    """wrk on ``url`` for ``seconds``; at about ``rate`` requests/s when given (wrk's ``delay``)."""
    text = script_for(target, "1")
    if rate:
        text += f"\nfunction delay()\n  return {1000 * CONNECTIONS / rate:.2f}\nend\n"
    script.write_text(text)
    run = subprocess.run(wrk_command(url + target.path.format(aid=1), script, CONNECTIONS, seconds),
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    wrk_figures(run.stdout)


def measure(server: Gunicorn, target: Target, seconds: int, hold_s: int, script: Path) -> Delivery:
    """Full speed then the catch-up; for single events, the latency at half speed and the hold."""
    url = server.url
    before = events(scrape(url))
    start = time.monotonic()
    load(target, url, script, seconds)
    stop = time.monotonic()
    at_stop = events(scrape(url))
    delivered_at_stop = at_stop.get("delivered", 0) - before.get("delivered", 0)
    # Each worker adds its counts to /metrics every COLLECTOR_SEND_INTERVAL_MS: the sender's may
    # show events a worker has not counted as accepted yet. Counted once every worker has.
    time.sleep(0.5)
    now = events(scrape(url))
    accepted = now.get("accepted", 0) - before.get("accepted", 0)
    while now.get("delivered", 0) - before.get("delivered", 0) < accepted and time.monotonic() < stop + 300:
        time.sleep(0.2)
        now = events(scrape(url))
    end = time.monotonic()
    delivered = now.get("delivered", 0) - before.get("delivered", 0)
    result = Delivery(accepted / (stop - start), delivered / (end - start), delivered_at_stop / max(accepted, 1),
                      end - stop)
    if target.events == 1 and result.delivered:
        result.light = result.delivered / 2
        first = buckets(scrape(url))
        load(target, url, script, seconds, result.light)
        result.p50_ms, result.p99_ms = (1000 * quantile(q, first, buckets(scrape(url))) for q in (0.5, 0.99))
        if hold_s:
            result.held = 0.9 * result.delivered
            load(target, url, script, 2, result.held)  # the log's size once at that pace
            start_backlog = backlog(scrape(url))
            load(target, url, script, hold_s, result.held)
            result.grew = backlog(scrape(url)) > max(start_backlog, 1.0) * 4 + 256 * 1024
    return result


def serve(work: Path, broker: str, workers: int, accounts: int, sender: str, name: str) -> Gunicorn:
    """A fresh collector on ``broker``, its registry listing ``accounts`` accounts from 1 (topics made)."""
    ids = [str(1 + i) for i in range(accounts)]
    create_topics(broker, [f"events.{a}" for a in ids])
    registry = work / f"{name}.toml"
    registry.write_text("".join(f'[accounts."{a}"]\ntrackers = ["1"]\n' for a in ids))
    (work / f"metrics-{name}").mkdir()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker, "COLLECTOR_SPOOL_DIR": str(work / f"spool-{name}"),
           "COLLECTOR_REGISTRY": str(registry), "PROMETHEUS_MULTIPROC_DIR": str(work / f"metrics-{name}"),
           "WEB_CONCURRENCY": str(workers), "COLLECTOR_SENDER": sender}
    return Gunicorn("wsgi:app", env, work / f"{name}.log").start()


def setups(workers_: list[int], accounts_: list[int]) -> list[tuple[str, Target, int, int]]:
    """(name, target, workers, accounts) for every setup asked for."""
    found = []
    for workers in workers_:
        for accounts in accounts_:
            for target in (TARGETS[0], TARGETS[2]):
                if accounts > 1:
                    target = replace(target, accounts=accounts)
                found.append((f"{target.name}, {workers} workers, {accounts} account(s)", target, workers, accounts))
    return found


def table(rows: list[tuple[str, Delivery]]) -> str:
    """The Markdown table of ``rows``."""
    lines = ["| setup | accepted, events/s | delivered over load and catch-up, events/s | delivered / accepted"
             " | delivered when the load stopped | catch-up, s | latency at half of delivered: events/s, p50 ms,"
             " p99 ms | held for the hold: events/s, log |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for name, d in rows:
        light = f"{d.light:.0f}, {d.p50_ms:.1f}, {d.p99_ms:.1f}" if d.light else "-"
        held = f"{d.held:.0f}, {'grew' if d.grew else 'steady'}" if d.held else "-"
        lines.append(f"| {name} | {d.accepted:.0f} | {d.delivered:.0f} | {d.share:.2f} | {d.at_stop:.2f}"
                     f" | {d.catch_up_s:.1f} | {light} | {held} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delivery", type=int, default=int(env("BENCH_DELIVERY", "20")),
                        help="seconds of full speed per setup")
    parser.add_argument("--hold", type=int, default=int(env("BENCH_HOLD", "60")), help="seconds, 0: none")
    parser.add_argument("--workers", type=lambda v: [int(w) for w in v.split(",")], default=[2, 8])
    parser.add_argument("--accounts", type=lambda v: [int(a) for a in v.split(",")], default=[1, 1000])
    parser.add_argument("--sender", default=env("COLLECTOR_SENDER", "process"))
    parser.add_argument("--only", default="", help="only the setups whose name has this")
    args = parser.parse_args(argv)
    with Broker() as broker:
        rows = measure_all(broker.servers, Path(tempfile.mkdtemp(prefix="delivery-")), args)
    print(table(rows))
    return 0


def measure_all(servers: str, work: Path, args: argparse.Namespace) -> list[tuple[str, Delivery]]:
    """Every setup ``args`` asks for (workers, accounts, sender, delivery, hold, only), each on a fresh collector."""
    rows = []
    for i, (name, target, workers, accounts) in enumerate(setups(args.workers, args.accounts)):
        if args.only not in name:
            continue
        print(f"bench: delivery, {name}", file=sys.stderr, flush=True)
        server = serve(work, servers, workers, accounts, args.sender, f"delivery-{i}")
        try:
            rows.append((name, measure(server, target, args.delivery, args.hold, work / "delivery.lua")))
        finally:
            server.stop()
    return rows


if __name__ == "__main__":
    sys.exit(main())
