"""`make bench` in small: one level, two seconds, outputs in a tmp dir; it completes and counts add up."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.integration


def cells(text: str, first: str, second: str | None = None) -> list[list[str]]:
    """The Markdown table rows whose first cells are ``first`` (and ``second``), split into cells."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]
    return [r for r in rows if r[0] == first and (second is None or r[1] == second)]


def test_a_short_benchmark_completes_and_every_204_is_in_kafka(tmp_path: Path) -> None:
    assert shutil.which("wrk"), "the benchmark needs wrk: apt-get install -y wrk"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--duration", "2", "--connections", "4", "--warmup", "0",
         "--runs", "1", "--out", str(tmp_path), "--no-chart", "--no-variants"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text = (tmp_path / "benchmarks.md").read_text()
    assert len(cells(text, "4")) == 4, text  # the throughput row, and one delivery row per target
    [collector] = cells(text, "4", "collector")
    [reference] = cells(text, "4", "reference")
    [batches] = cells(text, "4", "batches of 50")
    assert int(batches[4]) == int(batches[3]) > 0 and batches[5] == "ok", text
    seen, logged, in_kafka, check = int(collector[2]), int(collector[3]), int(collector[4]), collector[5]
    assert seen > 0 and int(reference[2]) > 0, text
    assert in_kafka == logged and check == "ok" and reference[5] == "ok", text
    assert seen <= in_kafka <= seen + 4, text  # wrk leaves at most one request per connection unanswered


def test_a_short_storm_completes_and_names_every_fault() -> None:
    """`make storm` in small: 18 s of faults under load. Seed 39 strikes the two faults that the
    harness itself does most for (a new gunicorn on the spool, a broker replaced by an empty
    one), then a worker's SIGTERM; the storm's exit status is its verdict on every 204."""
    run = subprocess.run([sys.executable, "bench/storm.py", "--minutes", "0.3", "--seed", "39"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    [faults] = [line for line in run.stdout.splitlines() if line.startswith("faults: ")]
    for fault in ("broker frozen", "broker replaced", "worker killed", "server killed", "reload", "worker exit",
                  "disk full"):
        assert f"{fault} " in faults, run.stdout
    assert "server killed 1" in faults and "broker replaced 1" in faults, run.stdout
    assert "missing from Kafka: 0" in run.stdout and "result: ok" in run.stdout, run.stdout


def test_a_short_delivery_benchmark_reports_delivered_beside_accepted_and_the_latency() -> None:
    """bench/delivery.py in small: 2 s per setup, a 2 s hold; every figure the table gives is there."""
    run = subprocess.run([sys.executable, "bench/delivery.py", "--delivery", "2", "--hold", "2", "--workers", "2",
                          "--accounts", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    [single] = cells(run.stdout, "collector, 2 workers, 1 account(s)")
    [batches] = cells(run.stdout, "batches of 50, 2 workers, 1 account(s)")
    for row in (single, batches):
        accepted, delivered, at_stop = float(row[1]), float(row[2]), float(row[4])
        assert accepted > 0 and delivered > 0 and 0 < at_stop <= 1, run.stdout
    light, p50, p99 = (float(x) for x in single[6].split(", "))
    assert light > 0 and 0 < p50 <= p99, run.stdout  # the latency at half speed, from the collector's histogram
    assert single[7].split(", ")[1] in ("steady", "grew") and batches[6] == "-", run.stdout


def test_turns_prints_the_cpu_per_request_of_each_app_at_each_process_count() -> None:
    """bench/turns.py in small: a row for each app and process count, with figures."""
    run = subprocess.run([sys.executable, "bench/turns.py", "--requests", "600", "--workers", "1,3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| collector")
            or line.startswith("| reference")]
    assert [(r[0].strip(), r[1].strip()) for r in rows] == [
        ("collector", "1"), ("collector", "3"), ("reference", "1"), ("reference", "3")], run.stdout
    assert all(float(r[2]) >= float(r[3]) > 0 for r in rows), run.stdout  # every thread's at least the request's
