"""The metrics (app/metrics.py): counts made while answering are added at the next flush, once."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from app import metrics


def test_a_count_is_added_at_the_next_flush_and_only_once():
    registry = CollectorRegistry()
    counter = Counter("test_counted", "this test's own counter", registry=registry)

    def value() -> float | None:
        return registry.get_sample_value("test_counted_total")

    metrics.count(counter, 2)
    metrics.count(counter)
    assert value() == 0  # not yet: counts wait for the flush
    metrics.flush()
    assert value() == 3
    metrics.flush()
    assert value() == 3


def test_requests_are_counted_by_route_and_status_and_shown_without_a_flush():
    labels = {"route": "/test-metrics/<x>", "status": "204"}

    def shown() -> float:
        return REGISTRY.get_sample_value("collector_http_requests_total", labels) or 0.0

    before = shown()
    metrics.count_request("/test-metrics/<x>", 204)
    metrics.count_request("/test-metrics/<x>", 204)
    metrics.count_request("/test-metrics/<x>", 404)
    text, content_type = metrics.exposition()  # what /metrics answers: it flushes first
    assert content_type.startswith("text/plain")
    assert shown() == before + 2
    line = f'collector_http_requests_total{{route="/test-metrics/<x>",status="204"}} {before + 2}'
    assert line in text.decode().splitlines()


def test_values_observed_together_land_in_the_buckets_and_sum_one_observe_each_would():
    registry = CollectorRegistry()
    together = Histogram("test_together", "observed together", buckets=(0.01, 0.05, 1), registry=registry)
    apart = Histogram("test_apart", "observed one by one", buckets=(0.01, 0.05, 1), registry=registry)
    values = [0.001, 0.01, 0.0100001, 0.05, 0.2, 1.0, 3.0, 0.03]  # on the bounds, between them, above them
    metrics.observe(together, values)
    for value in values:
        apart.observe(value)

    def samples(name: str) -> list[tuple[str, float]]:
        return [(s.labels.get("le", s.name.rsplit("_", 1)[-1]), s.value)
                for family in registry.collect() if family.name == name for s in family.samples
                if not s.name.endswith("_created")]

    assert samples("test_together") == samples("test_apart")
    assert ("0.05", 5.0) in samples("test_together")  # cumulative: the five values at 0.05 or under
