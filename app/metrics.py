"""The Prometheus metrics, shared by gunicorn's workers through prometheus_client's multi-process mode.

No label takes a value a caller chooses: routes are URL rules, statuses are codes, outcomes a
fixed set.
"""
from __future__ import annotations

import bisect
import os
import threading
from collections import deque
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("collector_http_requests", "HTTP requests answered, by route and status", ["route", "status"])
EVENTS = Counter("collector_events", "Events, by what happened to them", ["outcome"])
ACCEPTED = EVENTS.labels("accepted")  # written to the log and answered 204
DELIVERED = EVENTS.labels("delivered")  # acknowledged by Kafka
FAILED = EVENTS.labels("failed")  # a delivery Kafka failed and the sender will retry
DEAD_LETTER = EVENTS.labels("dead_letter")  # refused by Kafka for good, or failing too long: in dead-letter/
LOST = EVENTS.labels("lost")  # damaged records found in the log: should stay 0
REJECTS = Counter("collector_rejects", "Refused events, by what became of their record on the rejects topic",
                  ["outcome"])
REJECTS_PUBLISHED = REJECTS.labels("published")  # written to the log for the rejects topic
REJECTS_SAMPLED_OUT = REJECTS.labels("sampled_out")  # over COLLECTOR_REJECTS_PER_SECOND or _PER_ACCOUNT
REJECTS_DROPPED = REJECTS.labels("dropped")  # the log could not keep it (full, or unwritable)
REJECTS_DELIVERED = REJECTS.labels("delivered")  # acknowledged by Kafka
DELIVERY_SECONDS = Histogram(
    "collector_delivery_seconds", "From the 204 to Kafka's acknowledgement",
    buckets=(0.0025, 0.005, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PENDING = Gauge("collector_pending_events", "Events read from the log and held in memory, not yet acknowledged",
                multiprocess_mode="livesum")
BACKLOG_BYTES = Gauge("collector_spool_backlog_bytes", "Bytes in the log that Kafka has not acknowledged yet",
                      multiprocess_mode="livesum")
OLDEST_SECONDS = Gauge("collector_spool_oldest_seconds", "Age of the oldest event held that Kafka has not "
                       "acknowledged", multiprocess_mode="livemax")
# Every process sees the same directory: the largest of their looks is the host's figure, not
# a sum. (A "mostrecent" mode shows nothing until a process has looked, and the alert would
# read an absent series.) Fresh as long as the processes that look keep looking.
DEAD_LETTER_BYTES = Gauge("collector_dead_letter_bytes", "Bytes the dead letters hold on disk "
                          "(COLLECTOR_DEAD_LETTER_MAX_BYTES at most)", multiprocess_mode="livemax")


# Counts made while answering a request are appended here (a deque's append needs no lock)
# and added to the metrics in bulk by ``flush``: the sender thread calls it every
# COLLECTOR_SEND_INTERVAL_MS, and /metrics before it answers. In multi-process mode each increment takes
# the client's process-wide lock and writes to a memory-mapped file; done per request, with
# the sender thread wanting that lock too, it cost the request 3 % of a worker.
_tally: deque[tuple[Any, float]] = deque()
_flushing = threading.Lock()  # one flush at a time: the sender thread's and /metrics'
_routes: dict[tuple[str, int], Any] = {}  # REQUESTS' children, by route and status


def count(child: Any, amount: float = 1) -> None:
    """Add ``amount`` to a counter (a labelled child) at the next ``flush``."""
    _tally.append((child, amount))


def count_request(route: str, status: int) -> None:
    """Count an answer by route (a URL rule) and status at the next ``flush``."""
    child = _routes.get((route, status))
    if child is None:
        child = _routes[route, status] = REQUESTS.labels(route, str(status))
    _tally.append((child, 1))


def flush() -> None:
    """Add the counts made since the last flush to the metrics."""
    totals: dict[Any, float] = {}
    with _flushing:
        while _tally:
            child, amount = _tally.popleft()
            totals[child] = totals.get(child, 0) + amount
    for child, amount in totals.items():
        child.inc(amount)


def observe(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe`` for each of ``values``, with one increment per bucket: in multi-process
    mode each is a locked write to a mapped file, and the sender settles thousands at once.
    (Private to prometheus_client: its buckets count apart, the first bound at or above a value.)"""
    counts: dict[int, int] = {}
    for value in values:
        bucket = bisect.bisect_left(histogram._upper_bounds, value)
        counts[bucket] = counts.get(bucket, 0) + 1
    for bucket, count in counts.items():
        histogram._buckets[bucket].inc(count)
    histogram._sum.inc(sum(values))


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format: of all workers when under gunicorn."""
    flush()
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
